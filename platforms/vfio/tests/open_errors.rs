//! Opening a device that cannot be opened fails with the typed error whose
//! message says what to do, on any Linux machine (no VFIO needed).

#![cfg(target_os = "linux")]

use dma_vfio::{VfioDevice, VfioError};

#[test]
fn a_malformed_address_says_the_format() {
    let err = VfioDevice::open("00:02").unwrap_err();
    assert!(matches!(err, VfioError::BadPciAddress(_)), "{err}");
    assert!(err.to_string().contains("domain:bus:device.function"));
}

#[test]
fn a_missing_device_says_how_to_list_devices() {
    // Domain ffff does not exist on an ordinary machine.
    let err = VfioDevice::open("ffff:ff:1f.7").unwrap_err();
    assert!(matches!(err, VfioError::NoSuchDevice(_)), "{err}");
    assert!(err.to_string().contains("lspci -D"));
}

#[test]
fn every_error_names_its_fix() {
    let cases = [
        (VfioError::VfioNotLoaded, "modprobe vfio-pci"),
        (VfioError::NoIommu("0000:00:02.0".into()), "intel_iommu=on"),
        (
            VfioError::NoPrivileges("open /dev/vfio/2".into()),
            "run as root",
        ),
        (
            VfioError::GroupNotViable {
                group: 2,
                members: vec!["0000:00:02.0".into(), "0000:00:02.1".into()],
            },
            "0000:00:02.1",
        ),
        (VfioError::GroupBusy { group: 2 }, "fuser -v /dev/vfio/2"),
        (VfioError::NoInterruptRemapping, "allow_unsafe_interrupts"),
        (VfioError::NoType1Iommu, "vfio_iommu_type1"),
        (
            VfioError::MemlockTooLow {
                limit: Some(65536),
                wanted: 1 << 21,
            },
            "ulimit -l",
        ),
        (
            VfioError::OutsideIovaRanges {
                iova: 0xfee0_0000,
                len: 4096,
            },
            "iova_ranges",
        ),
    ];
    for (err, fix) in cases {
        assert!(err.to_string().contains(fix), "{err} should mention {fix}");
    }
}
