//! TLS for the store LAN: load the configured certificate, or generate a self-signed one on first
//! start (names: localhost, 127.0.0.1, the host name, configured extras) and print its SHA-256
//! fingerprint so a tablet can pin it. The private key file is created with mode 0600.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("TLS file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// Make sure a certificate and key exist; returns true when a new pair was generated.
pub fn ensure_cert(cert: &Path, key: &Path, extra_names: &[String]) -> Result<bool, TlsError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    names.extend(extra_names.iter().cloned());
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "ServiceBay store appliance");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let c = params.self_signed(&key_pair).map_err(|e| TlsError::Generate(e.to_string()))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    write_private(key, key_pair.serialize_pem().as_bytes())?;
    std::fs::write(cert, c.pem()).map_err(io(cert))?;
    Ok(true)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

fn load_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(f)).collect::<Result<Vec<_>, _>>().map_err(io(path))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid { path: path.into(), message: "no PEM certificate found".into() });
    }
    Ok(certs)
}

/// SHA-256 fingerprint of the leaf certificate, as AA:BB:… (what a tablet pins).
pub fn fingerprint(cert: &Path) -> Result<String, TlsError> {
    let certs = load_certs(cert)?;
    let d = Sha256::digest(certs[0].as_ref());
    Ok(d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

fn load_key(key: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsError> {
    let f = std::fs::File::open(key).map_err(io(key))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(io(key))?
        .ok_or_else(|| TlsError::Invalid { path: key.into(), message: "no PEM private key found".into() })
}

/// A TLS client (the MQTT link to HQ): trust `ca` (or the system's roots when none is given), and
/// present `client` (certificate, key) when HQ authenticates stores by certificate.
pub fn client_config(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::Invalid { path: ca.into(), message: e.to_string() })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid { path: ca.unwrap_or(Path::new("-")).into(), message: e.to_string() })?
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Invalid { path: cert.into(), message: e.to_string() })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid { path: cert.into(), message: e.to_string() })?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Invalid { path: cert.into(), message: e.to_string() })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_fingerprint_is_stable() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = (d.path().join("tls/cert.pem"), d.path().join("tls/key.pem"));
        assert!(ensure_cert(&c, &k, &["servicebay.local".into()]).unwrap());
        let fp = fingerprint(&c).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(!ensure_cert(&c, &k, &[]).unwrap());
        assert_eq!(fingerprint(&c).unwrap(), fp);
        server_config(&c, &k).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
