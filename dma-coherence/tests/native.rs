//! The real instructions on the machine running the tests: x86_64 on the
//! host, aarch64 under qemu-user (`cargo xtask test`), riscv64 only built.
//!
//! Caches keep data, so the observable promise in a single process is that
//! maintenance runs, probes sane line sizes and never changes a byte the
//! process owns. aarch64 user space is EL0, where `dc cvac` and `dc civac`
//! are allowed and `dc ivac` is UNDEFINED (SIGILL): these tests use the EL0
//! form, whose invalidate is `dc civac`. The `dc ivac` test is ignored
//! here and runs at EL1 in the bare-metal QEMU tests (dma-qemu-virt).

// Miri cannot run inline assembly or CPUID.
#![cfg(not(miri))]

use dma_coherence::{barrier, CacheMaintenance};

/// Fills a buffer, runs every operation over aligned, unaligned, tiny and
/// empty ranges inside it, and checks the contents survived.
#[allow(dead_code)] // unused on architectures without maintenance
fn exercise<C: CacheMaintenance>(cache: &C) {
    let line = cache.line_size();
    assert!(
        line.is_power_of_two() && (16..=512).contains(&line),
        "line size {line}"
    );
    // Eight whole lines that belong to this buffer alone, wherever the
    // allocator put it.
    let mut buf = vec![0u8; 10 * line];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8;
    }
    let expect = buf.clone();
    let owned = (buf.as_mut_ptr() as usize).next_multiple_of(line);
    let size = 8 * line;
    let ranges = [
        (0, size),
        (1, line),
        (line - 1, 2),
        (3, 5 * line + 7),
        (size - 1, 1),
        (5, 0),
    ];
    for (off, len) in ranges {
        // SAFETY: every range, widened to lines, lies inside the eight owned
        // lines of `buf`, which this test owns and has written (nothing is
        // lost when the invalidate discards them: the clean just before
        // wrote them to memory).
        unsafe {
            cache.clean(owned + off, len);
            cache.clean_invalidate(owned + off, len);
            cache.clean(owned + off, len);
            cache.invalidate(owned + off, len);
        }
    }
    assert_eq!(buf, expect);
}

#[test]
fn barriers_execute() {
    barrier::publish_descriptors();
    barrier::before_doorbell();
    barrier::after_completion_flag();
    barrier::dma_full();
    barrier::mmio_write_barrier();
    barrier::write_combine_flush();
}

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use super::exercise;
    use dma_coherence::arch::x86_64::{FlushInsn, X86Maintenance};
    use dma_coherence::CacheMaintenance;

    #[test]
    fn cpuid_probe_finds_clflush_and_a_line_size() {
        let m = X86Maintenance::probe().unwrap();
        println!(
            "x86_64: line {} bytes, flush {:?}, clwb {}",
            m.line_size(),
            m.flush_insn(),
            m.uses_clwb()
        );
        assert!(!m.is_coherent());
    }

    #[test]
    fn every_instruction_path_keeps_the_data() {
        let m = X86Maintenance::probe().unwrap();
        exercise(&m);
        let legacy = m.clflush_only();
        assert_eq!(legacy.flush_insn(), FlushInsn::Clflush);
        assert!(!legacy.uses_clwb());
        exercise(&legacy);
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use super::exercise;
    use dma_coherence::arch::aarch64::{Aarch64Maintenance, ExceptionLevel};
    use dma_coherence::CacheMaintenance;

    #[test]
    fn ctr_el0_gives_the_line_size() {
        let m = Aarch64Maintenance::el0();
        println!(
            "aarch64: CTR_EL0.DminLine line size {} bytes",
            m.line_size()
        );
        assert!(!m.is_coherent());
        assert_eq!(Aarch64Maintenance::probe().line_size(), m.line_size());
    }

    #[test]
    fn probe_picks_el0_under_an_operating_system() {
        let expected = if cfg!(target_os = "none") {
            ExceptionLevel::El1
        } else {
            ExceptionLevel::El0
        };
        assert_eq!(Aarch64Maintenance::probe().level(), expected);
    }

    #[test]
    fn el0_clean_and_clean_invalidate_keep_the_data() {
        // EL0: dc cvac for clean, dc civac for clean+invalidate and for
        // invalidate.
        exercise(&Aarch64Maintenance::el0());
    }

    #[test]
    #[cfg_attr(
        not(target_os = "none"),
        ignore = "dc ivac is UNDEFINED at EL0 (SIGILL); runs at EL1 on bare metal"
    )]
    fn el1_invalidate_uses_dc_ivac() {
        let m = Aarch64Maintenance::el1();
        let line = m.line_size();
        let mut buf = vec![0xa5u8; 4 * line];
        let va = buf.as_mut_ptr() as usize;
        let start = va.next_multiple_of(line);
        // SAFETY: whole lines inside `buf`, cleaned first, so discarding
        // them loses nothing.
        unsafe {
            m.clean(start, 2 * line);
            m.invalidate(start, 2 * line);
        }
        assert!(buf.iter().all(|&b| b == 0xa5));
    }
}
