//! The shipped systemd units stay hardened: `systemd-analyze security --offline=true` scores the
//! store daemon's unit alone (a CPU box) and with the GPU drop-in (`systemd/servicebay-gpu.conf`)
//! at or below 2.0, and the drop-in opens only the NVIDIA devices while the base unit keeps
//! `PrivateDevices=yes` and `MemoryDenyWriteExecute=yes`. Units are read from a private root
//! directory, never from this machine's /etc.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The overall exposure score of `unit` under `root` and the full report.
fn score(root: &Path, unit: &str) -> (f64, String) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(unit)
        .output()
        .expect("systemd-analyze runs (scripts/setup.sh installs the systemd package)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("no score in:\n{text}"));
    let value = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("unreadable score line: {line}"));
    (value, text)
}

/// A root with the unit installed where systemd looks, and the GPU drop-in when asked.
fn install(dir: &Path, gpu: bool) {
    let units = dir.join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("unit dir");
    std::fs::copy(repo().join("systemd/servicebay.service"), units.join("servicebay.service")).expect("copy unit");
    if gpu {
        let d = units.join("servicebay.service.d");
        std::fs::create_dir_all(&d).expect("drop-in dir");
        std::fs::copy(repo().join("systemd/servicebay-gpu.conf"), d.join("gpu.conf")).expect("copy drop-in");
    }
}

/// The report's verdict on one setting: the line that names it.
fn verdict<'a>(report: &'a str, setting: &str) -> &'a str {
    report.lines().find(|l| l.contains(&format!(" {setting}="))).unwrap_or_else(|| panic!("{setting} not in the report:\n{report}"))
}

#[test]
fn cpu_unit_and_gpu_drop_in_score_at_most_two() {
    let tmp = std::env::temp_dir().join(format!("servicebay-units-{}", std::process::id()));
    let (cpu_root, gpu_root) = (tmp.join("cpu"), tmp.join("gpu"));
    install(&cpu_root, false);
    install(&gpu_root, true);

    let (cpu, cpu_report) = score(&cpu_root, "servicebay.service");
    let (gpu, gpu_report) = score(&gpu_root, "servicebay.service");
    println!("exposure: CPU unit {cpu}, with the GPU drop-in {gpu}");
    assert!(cpu <= 2.0, "CPU unit scores {cpu}:\n{cpu_report}");
    assert!(gpu <= 2.0, "GPU unit scores {gpu}:\n{gpu_report}");

    // The CPU box keeps W^X and a private /dev with no device ACL beyond systemd's defaults.
    assert!(verdict(&cpu_report, "MemoryDenyWriteExecute").starts_with('✓'), "{cpu_report}");
    assert!(verdict(&cpu_report, "PrivateDevices").starts_with('✓'), "{cpu_report}");
    assert!(!cpu_report.contains("nvidia"), "the CPU unit names no GPU device");

    // The GPU drop-in keeps the private /dev and admits the NVIDIA majors, nothing broader.
    assert!(verdict(&gpu_report, "PrivateDevices").starts_with('✓'), "{gpu_report}");
    let acl = verdict(&gpu_report, "DeviceAllow");
    assert!(acl.contains("char-nvidia-frontend:rw") && acl.contains("char-nvidia-uvm:rw"), "{acl}");
    assert!(!acl.contains("block-") && !acl.contains("/dev/mem"), "{acl}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn gpu_drop_in_loosens_nothing_else() {
    // Every setting the drop-in touches, and nothing more: a new line must be argued for here.
    let text = std::fs::read_to_string(repo().join("systemd/servicebay-gpu.conf")).expect("drop-in");
    let mut keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split('=').next())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys, ["BindPaths", "DeviceAllow", "MemoryDenyWriteExecute", "ProcSubset"]);
    for l in text.lines().filter(|l| l.starts_with("BindPaths=")) {
        for p in l.trim_start_matches("BindPaths=").split_whitespace() {
            assert!(p.trim_start_matches('-').starts_with("/dev/nvidia"), "binds only NVIDIA nodes: {p}");
        }
    }
}
