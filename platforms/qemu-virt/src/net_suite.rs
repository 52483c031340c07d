//! The network checks: Ethernet frames of several sizes sent from one NIC
//! and verified byte for byte where they arrive. Nothing here knows the
//! architecture or the NIC: a board wraps each driver in a [`Port`] and
//! names the pair, and the lines go to its console in the
//! [`report`](crate::report) protocol.
//!
//! Every frame carries its own identity (sender, size, sequence number) in
//! a pattern the receiver recomputes, so a frame truncated, padded,
//! reordered, duplicated or delivered from the wrong sender fails the
//! check by name.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use dma_core::{DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::nic::NicDriver;
use dma_drivers::virtio::transport::Transport;
use dma_drivers::virtio::VirtioNet;
use dma_drivers::{DriverError, Wait};

use crate::report::{pattern_byte, Reporter};

/// The EtherType of every test frame: 0x88b5, "local experimental"
/// (IEEE 802), which no protocol stack claims.
pub const ETHERTYPE: u16 = 0x88b5;

/// Frame sizes every pair sends each way (header included, CRC excluded):
/// the Ethernet minimum, one over it (no padding hides the length), a
/// middle size, and the largest untagged frame.
pub const SIZES: [usize; 4] = [60, 61, 514, 1514];

/// A NIC as the checks see it.
pub trait Port {
    /// Short name for test names and messages (no spaces).
    fn name(&self) -> &'static str;

    /// Sends `frame` and waits until the NIC has taken it (the buffer is
    /// back).
    ///
    /// # Errors
    ///
    /// The driver's error, as text.
    fn send(&mut self, frame: &[u8]) -> Result<(), String>;

    /// Waits for the next received frame.
    ///
    /// # Errors
    ///
    /// The driver's error, as text (a timeout when none comes).
    fn receive(&mut self) -> Result<Vec<u8>, String>;
}

/// A test frame from `src` to `dst` of `len` bytes (at least 14): the
/// Ethernet header, then the sequence number `seq` and the length as
/// 16-bit big-endian words, then the pattern of seed
/// [`frame_seed`]`(src, seq)`.
pub fn frame(dst: [u8; 6], src: [u8; 6], seq: u16, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&(len as u16).to_be_bytes());
    let seed = frame_seed(src, seq);
    let start = f.len() as u64;
    f.extend((start..len as u64).map(|i| pattern_byte(seed, i)));
    f.truncate(len);
    f
}

/// The pattern seed of frame `seq` from `src`.
pub fn frame_seed(src: [u8; 6], seq: u16) -> u32 {
    u32::from_be_bytes([src[4], src[5], 0, 0]) | u32::from(seq)
}

/// The first difference between what was sent and what arrived.
pub fn compare(sent: &[u8], got: &[u8]) -> Result<(), String> {
    if let Some(i) = sent.iter().zip(got).position(|(a, b)| a != b) {
        return Err(format!(
            "byte {i} is {:#04x}, sent {:#04x} ({} bytes sent, {} received)",
            got[i],
            sent[i],
            sent.len(),
            got.len()
        ));
    }
    if sent.len() != got.len() {
        return Err(format!(
            "{} bytes received for {} sent (the common prefix matches)",
            got.len(),
            sent.len()
        ));
    }
    Ok(())
}

/// Sends one frame of each of `sizes` from `from` (MAC `from_mac`) to
/// `to` (MAC `to_mac`), each received and compared before the next is
/// sent; reports `<prefix>.<from>_to_<to>`.
pub fn one_way<W: Write>(
    r: &mut Reporter<W>,
    prefix: &str,
    (from, from_mac): (&mut dyn Port, [u8; 6]),
    (to, to_mac): (&mut dyn Port, [u8; 6]),
    sizes: &[usize],
) -> bool {
    let name = format!("{prefix}.{}_to_{}", from.name(), to.name());
    let result = carry(from, Some(to), (from_mac, to_mac), sizes);
    r.outcome(&name, result)
}

/// Sends one frame of each of `sizes` from `port` (MAC `mac`, in loopback)
/// to itself, each received and compared before the next is sent; reports
/// `<prefix>.<port>_loopback`.
pub fn loopback<W: Write>(
    r: &mut Reporter<W>,
    prefix: &str,
    port: &mut dyn Port,
    mac: [u8; 6],
    sizes: &[usize],
) -> bool {
    let name = format!("{prefix}.{}_loopback", port.name());
    let result = carry(port, None, (mac, mac), sizes);
    r.outcome(&name, result)
}

/// The frames of [`one_way`] and [`loopback`]: received by `to`, or by
/// `from` itself when `to` is `None`.
fn carry(
    from: &mut dyn Port,
    mut to: Option<&mut dyn Port>,
    (from_mac, to_mac): ([u8; 6], [u8; 6]),
    sizes: &[usize],
) -> Result<String, String> {
    for (seq, &len) in sizes.iter().enumerate() {
        let sent = frame(to_mac, from_mac, seq as u16, len);
        from.send(&sent)
            .map_err(|e| format!("sending {len} bytes: {e}"))?;
        let got = match to.as_deref_mut() {
            Some(to) => to.receive(),
            None => from.receive(),
        }
        .map_err(|e| format!("receiving {len} bytes: {e}"))?;
        compare(&sent, &got).map_err(|e| format!("frame of {len} bytes: {e}"))?;
    }
    Ok(format!(
        "{} frames of {sizes:?} bytes, each identical on arrival",
        sizes.len()
    ))
}

/// A [`Port`] over `dma-drivers`' 8254x-style [`NicDriver`]: frames are
/// copied into fresh DMA buffers from `platform`.
pub struct NicPort<'a, P, W>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    /// Name in test names.
    pub name: &'static str,
    /// The driver.
    pub driver: NicDriver<'a, P, W, DmaBuf>,
    /// Where TX buffers come from.
    pub platform: P,
}

impl<P, W> Port for NicPort<'_, P, W>
where
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        let text = |e: DriverError| format!("{e}");
        let buf = dma_frame(&self.platform, frame)?;
        self.driver.send(buf).map_err(|r| text(r.error))?;
        let done = self.driver.wait_sent().map_err(text)?;
        done.result.map_err(text)?;
        if done.buffer.is_none() {
            return Err(String::from("the frame's buffer was not given back"));
        }
        Ok(())
    }

    fn receive(&mut self) -> Result<Vec<u8>, String> {
        self.driver.wait_frame().map_err(|e| format!("{e}"))
    }
}

/// Copies `frame` into a fresh DMA buffer from `platform` (whole cache
/// lines, as a mapping on a non-coherent machine needs).
fn dma_frame<P: DmaMap>(platform: &P, frame: &[u8]) -> Result<DmaBuf, String> {
    let mut buf = DmaBuf::for_device(platform, frame.len()).map_err(|e| format!("{e}"))?;
    buf.copy_from_slice(frame);
    Ok(buf)
}

/// A [`Port`] over `dma-drivers`' [`VirtioNet`]: frames are copied into
/// fresh DMA buffers from `platform`.
pub struct VirtioPort<T, P, W>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    /// Name in test names.
    pub name: &'static str,
    /// The driver.
    pub driver: VirtioNet<T, P, W, DmaBuf>,
    /// Where TX buffers come from.
    pub platform: P,
}

impl<T, P, W> Port for VirtioPort<T, P, W>
where
    T: Transport,
    P: DmaMap + DmaAlloc + Clone,
    W: Wait,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        let buf = dma_frame(&self.platform, frame)?;
        self.driver.send(buf).map_err(|r| format!("{}", r.error))?;
        self.driver
            .wait_sent()
            .map(drop)
            .map_err(|e| format!("{e}"))
    }

    fn receive(&mut self) -> Result<Vec<u8>, String> {
        self.driver.wait_frame().map_err(|e| format!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

    #[test]
    fn frames_carry_header_identity_and_length() {
        for len in SIZES {
            let f = frame(B, A, 3, len);
            assert_eq!(f.len(), len);
            assert_eq!(&f[..6], &B);
            assert_eq!(&f[6..12], &A);
            assert_eq!(&f[12..14], &[0x88, 0xb5]);
            assert_eq!(&f[14..18], &[0, 3, (len >> 8) as u8, len as u8]);
        }
        // Different senders and sequence numbers fill differently.
        assert_ne!(frame(B, A, 0, 100)[18..], frame(B, A, 1, 100)[18..]);
        assert_ne!(frame(A, B, 0, 100)[18..], frame(B, A, 0, 100)[18..]);
    }

    #[test]
    fn compare_names_the_first_difference() {
        let sent = frame(B, A, 0, 61);
        assert_eq!(compare(&sent, &sent), Ok(()));
        let mut flipped = sent.clone();
        flipped[40] ^= 0xff;
        assert!(compare(&sent, &flipped)
            .unwrap_err()
            .starts_with("byte 40 "));
        let mut padded = sent.clone();
        padded.extend([0; 4]);
        assert!(compare(&sent, &padded)
            .unwrap_err()
            .contains("65 bytes received for 61"));
        assert!(compare(&sent, &sent[..60])
            .unwrap_err()
            .contains("60 bytes received"));
    }
}
