//! DMA attribute flags (Linux's `DMA_ATTR_*`).

bitflags::bitflags! {
    /// Attributes that change how a mapping or allocation is made.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct DmaAttrs: u32 {
        /// Skip CPU cache maintenance at map and unmap (`DMA_ATTR_SKIP_CPU_SYNC`):
        /// the driver syncs explicitly, for example only the bytes a device
        /// reported it wrote. Explicit `sync_*` calls still maintain.
        const SKIP_CPU_SYNC = 1 << 0;
        /// The device may reorder its writes to this memory relative to other
        /// DMA (`DMA_ATTR_WEAK_ORDERING`, PCIe relaxed ordering).
        const WEAK_ORDERING = 1 << 1;
        /// Map a coherent allocation write-combining (`DMA_ATTR_WRITE_COMBINE`):
        /// CPU writes are buffered and merged, so a store fence is needed
        /// before the device is told to look.
        const WRITE_COMBINE = 1 << 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_distinct_bits() {
        let all = DmaAttrs::all();
        assert_eq!(all.bits().count_ones(), 3);
        assert!(DmaAttrs::default().is_empty());
    }
}
