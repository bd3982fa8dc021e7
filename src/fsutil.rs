//! Small file-system helpers shared by the composition root and the modules below it (so that no
//! module has to reach up into `app` for them).

use std::path::Path;

/// Write `text` to `path` readable by the owner only (0600 on Unix): initial passwords, signing
/// keys. The mode is set at creation, so the secret is never briefly world-readable.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)?.write_all(text.as_bytes())
}
