//! Maps a transmit and a receive buffer on the x86-coherent preset and
//! prints what a driver would hand the device.

use dma_core::{
    Coherent, DeviceConstraints, DmaPool, FromDevice, HostMemory, StreamingMapping, ToDevice,
};
use dma_direct::DirectPlatform;

fn main() -> Result<(), dma_core::Error> {
    let constraints = DeviceConstraints::builder()
        .addr_bits(64)
        .alignment(4)
        .max_segment_size(64 * 1024)
        .build()?;
    let platform = DirectPlatform::x86_coherent(HostMemory, constraints);

    let tx = StreamingMapping::<_, ToDevice, _>::map(&platform, vec![0xa5u8; 1514])?;
    let mut rx = StreamingMapping::<_, FromDevice, _>::map(&platform, vec![0u8; 2048])?;
    let ring = Coherent::<[u64], _>::zeroed_slice(&platform, 256)?;
    let pool = DmaPool::new(&platform, 256, 256, Some(4096), 32)?;
    let block = pool.alloc()?;

    println!("tx frame    {:>6} bytes at {}", tx.len(), tx.dma_addr());
    println!("rx buffer   {:>6} bytes at {}", rx.len(), rx.dma_addr());
    println!(
        "ring        {:>6} bytes at {}",
        ring.size(),
        ring.dma_addr()
    );
    println!(
        "pool block  {:>6} bytes at {} ({} of {} free)",
        block.size(),
        block.dma_addr(),
        pool.available(),
        pool.capacity()
    );

    rx.sync_for_cpu();
    let frame = tx.unmap()?;
    let packet = rx.unmap()?;
    println!(
        "unmapped: got back {} + {} bytes",
        frame.len(),
        packet.len()
    );
    Ok(())
}
