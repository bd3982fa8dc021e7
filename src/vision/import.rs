//! Python-free import of Ultralytics models and the installed-model registry.
//!
//! `import_model` reads an ONNX export (initializers + `names` metadata), a training checkpoint
//! `.pt` (zip + pickle, fp16 storages, un-fused BN) or a `.safetensors`, checks that the weights
//! build a YOLOv8 network, and writes `models/NAME.safetensors` (f32, Ultralytics tensor names,
//! fused or un-fused as found: BN is folded at load) plus the model card `models/NAME.toml`.
//! `list_models` reads the cards; `load_detector` builds a ready [`Detector`].
//!
//! Roles: COCO's car/truck/bus/motorcycle are `vehicle` and `person` is `pii:person` (blur the
//! head region). For any other model every class is `ignore` unless its name matches our
//! vocabularies: damage (scratch, dent, crack, paint_damage, broken, rust, ...) → `damage:<type>`,
//! plates → `pii:plate`, faces → `pii:face`. A dealer edits the card to change roles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

use crate::vision::engine::YoloDetector;
use crate::vision::yolo::{compute_dtype, default_device, YoloV8};
use crate::vision::{DetectOptions, Detector, ModelCard, Role, VisionError};

const INPUT_SIZE: u32 = 640;

/// Canonical damage types and the class-name spellings that map to them.
const DAMAGE_VOCAB: &[(&str, &[&str])] = &[
    ("scratch", &["scratch", "scratches", "scratched", "scrape"]),
    ("dent", &["dent", "dents", "dented", "deformation"]),
    ("crack", &["crack", "cracks", "cracked"]),
    ("paint_damage", &["paint_damage", "paint", "paint_chip", "chip", "peeling"]),
    ("broken", &["broken", "broken_glass", "glass_shatter", "shattered_glass", "broken_lamp", "lamp_broken", "broken_light"]),
    ("rust", &["rust", "corrosion"]),
];

fn normalise(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '-'], "_")
}

/// The role of a class, given the names of all classes of the model (to recognise COCO).
pub fn role_for(name: &str, is_coco: bool) -> Role {
    let n = normalise(name);
    if is_coco {
        return match n.as_str() {
            "car" | "truck" | "bus" | "motorcycle" => Role::Vehicle,
            "person" => Role::PiiPerson,
            _ => Role::Ignore,
        };
    }
    for (canon, spellings) in DAMAGE_VOCAB {
        if spellings.contains(&n.as_str()) {
            return Role::Damage((*canon).to_string());
        }
    }
    match n.as_str() {
        "license_plate" | "licence_plate" | "number_plate" | "plate" => Role::PiiPlate,
        "face" | "head" => Role::PiiFace,
        _ => Role::Ignore,
    }
}

fn looks_like_coco(names: &[String]) -> bool {
    names.len() == 80 && names.first().map(String::as_str) == Some("person") && names.get(2).map(String::as_str) == Some("car")
}

/// Parses Ultralytics' `names` metadata, a Python dict literal: `{0: 'person', 1: "it's"}`.
pub fn parse_names(s: &str) -> Option<Vec<String>> {
    let body = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ':' {
                break;
            }
            key.push(c);
            chars.next();
        }
        chars.next(); // ':'
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let mut val = String::new();
        loop {
            let c = chars.next()?;
            if c == '\\' {
                val.push(chars.next()?);
            } else if c == quote {
                break;
            } else {
                val.push(c);
            }
        }
        out.push((key.trim().parse().ok()?, val));
    }
    out.sort_by_key(|(k, _)| *k);
    // Ids must be 0..n without gaps: the network's class index is the position.
    if out.iter().enumerate().any(|(i, (k, _))| i != *k) {
        return None;
    }
    Some(out.into_iter().map(|(_, v)| v).collect())
}

/// Class names as the Python dict literal Ultralytics writes (`{0: 'a', 1: 'b'}`).
pub fn names_literal(names: &[String]) -> String {
    let items: Vec<String> =
        names.iter().enumerate().map(|(i, n)| format!("{i}: '{}'", n.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
    format!("{{{}}}", items.join(", "))
}

fn sha256_file(path: &Path) -> Result<String, VisionError> {
    let bytes = std::fs::read(path).map_err(|e| VisionError::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Builds the network from a tensor map (validates the architecture).
fn build_net(tensors: HashMap<String, Tensor>, bn_eps: f64, dev: &Device, path: &Path) -> Result<YoloV8, VisionError> {
    let vb = VarBuilder::from_tensors(tensors, compute_dtype(dev), dev);
    YoloV8::load(vb.pp("model"), bn_eps)
        .map_err(|e| VisionError::Architecture { path: path.to_path_buf(), reason: crate::vision::candle_message(&e) })
}

/// Imports an Ultralytics `.onnx`, `.pt` or `.safetensors` into `models_dir`.
pub fn import_model(src: &Path, models_dir: &Path, name: Option<&str>) -> Result<ModelCard, VisionError> {
    if !src.exists() {
        return Err(VisionError::ModelMissing {
            name: src.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            path: src.to_path_buf(),
        });
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => src.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    if !valid_name(&name) {
        return Err(VisionError::Invalid(format!("model name '{name}': use 1-64 letters, digits, '_' or '-' (pass --name)")));
    }
    let ext = src.extension().and_then(|e| e.to_str()).map(str::to_lowercase).unwrap_or_default();
    let (tensors, names, licence, bn_eps) = match ext.as_str() {
        "onnx" => {
            let bytes = std::fs::read(src).map_err(|e| VisionError::io(src, e))?;
            let w = crate::vision::onnx::read_onnx(src, &bytes)?;
            let names = w.metadata.get("names").and_then(|s| parse_names(s));
            (w.tensors, names, w.metadata.get("license").cloned(), 1e-3)
        }
        "pt" | "pth" => {
            let w = crate::vision::pt::read_pt(src)?;
            let names = if w.names.is_empty() { None } else { Some(w.names) };
            (w.tensors, names, w.licence, w.bn_eps.unwrap_or(1e-3))
        }
        "safetensors" => {
            let bytes = std::fs::read(src).map_err(|e| VisionError::io(src, e))?;
            let st = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| VisionError::format(src, crate::vision::candle_message(&e)))?;
            let meta = safetensors::SafeTensors::read_metadata(&bytes).ok().and_then(|(_, m)| m.metadata().clone()).unwrap_or_default();
            let tensors = st.into_iter().map(|(k, v)| v.to_dtype(DType::F32).map(|v| (k, v))).collect::<Result<HashMap<_, _>, _>>()?;
            let names = meta.get("names").and_then(|s| parse_names(s));
            let eps = meta.get("bn_eps").and_then(|s| s.parse().ok()).unwrap_or(1e-3);
            (tensors, names, meta.get("license").cloned(), eps)
        }
        other => return Err(VisionError::format(src, format!("unknown model file type '.{other}': use .onnx, .pt or .safetensors"))),
    };

    // Bare state dicts of the inner Sequential lack the `model.` prefix.
    let tensors: HashMap<String, Tensor> = if tensors.keys().any(|k| k.starts_with("model.")) {
        tensors
    } else {
        tensors.into_iter().map(|(k, v)| (format!("model.{k}"), v)).collect()
    };
    let net = build_net(tensors.clone(), bn_eps, &Device::Cpu, src)?;
    let nc = net.num_classes();
    // A forward pass on a small blank input checks that every layer's shapes chain up, so a
    // broken file fails here, at import, and not on the first customer photo.
    let probe = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?;
    match net.forward(&probe).and_then(|y| y.dims3()) {
        Ok((1, rows, 84)) if rows == 4 + nc => {}
        Ok(dims) => return Err(VisionError::Architecture { path: src.to_path_buf(), reason: format!("probe output {dims:?}") }),
        Err(e) => return Err(VisionError::Architecture { path: src.to_path_buf(), reason: crate::vision::candle_message(&e) }),
    }
    let classes = match names {
        Some(n) if n.len() == nc => n,
        Some(n) => return Err(VisionError::format(src, format!("metadata names {} classes, the network has {nc}", n.len()))),
        None => (0..nc).map(|i| format!("class{i}")).collect(),
    };
    let coco = looks_like_coco(&classes);
    let roles = classes.iter().map(|c| role_for(c, coco)).collect();
    let card = ModelCard {
        name: name.clone(),
        scale: YoloV8::scale_from_stem(net.stem_channels()).to_string(),
        input_size: INPUT_SIZE,
        classes,
        roles,
        source_sha256: sha256_file(src)?,
        source_file: src.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        licence: licence.unwrap_or_else(|| "unknown".into()),
        bn_eps,
    };

    std::fs::create_dir_all(models_dir).map_err(|e| VisionError::io(models_dir, e))?;
    // Write to temporary names and rename, so a crash never leaves a half-written model that
    // `list_models` would show.
    let st_path = models_dir.join(format!("{name}.safetensors"));
    let tmp_st = models_dir.join(format!(".{name}.safetensors.tmp"));
    // The metadata makes the written file itself importable elsewhere (names, eps, licence).
    let meta: HashMap<String, String> = [
        ("names".to_string(), names_literal(&card.classes)),
        ("bn_eps".to_string(), card.bn_eps.to_string()),
        ("license".to_string(), card.licence.clone()),
    ]
    .into_iter()
    .collect();
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::serialize_to_file(sorted, Some(meta), &tmp_st).map_err(|e| VisionError::format(&tmp_st, e.to_string()))?;
    let toml_path = models_dir.join(format!("{name}.toml"));
    let tmp_toml = models_dir.join(format!(".{name}.toml.tmp"));
    let text = toml::to_string_pretty(&card).map_err(|e| VisionError::Card(e.to_string()))?;
    std::fs::write(&tmp_toml, text).map_err(|e| VisionError::io(&tmp_toml, e))?;
    std::fs::rename(&tmp_st, &st_path).map_err(|e| VisionError::io(&st_path, e))?;
    std::fs::rename(&tmp_toml, &toml_path).map_err(|e| VisionError::io(&toml_path, e))?;
    tracing::info!(model = %name, scale = %card.scale, classes = nc, "model imported");
    Ok(card)
}

/// Reads one installed card.
pub fn read_card(models_dir: &Path, name: &str) -> Result<ModelCard, VisionError> {
    let path = models_dir.join(format!("{name}.toml"));
    if !path.exists() {
        return Err(VisionError::ModelMissing { name: name.to_string(), path });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| VisionError::io(&path, e))?;
    let card: ModelCard = toml::from_str(&text).map_err(|e| VisionError::Card(format!("{}: {e}", path.display())))?;
    if card.roles.len() != card.classes.len() {
        return Err(VisionError::Card(format!("{}: {} roles for {} classes", path.display(), card.roles.len(), card.classes.len())));
    }
    if card.input_size == 0 || card.input_size % 32 != 0 {
        return Err(VisionError::Card(format!("{}: input_size must be a multiple of 32", path.display())));
    }
    Ok(card)
}

/// All installed models (cards with their weights next to them), sorted by name.
pub fn list_models(models_dir: &Path) -> Result<Vec<ModelCard>, VisionError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(models_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(VisionError::io(models_dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| VisionError::io(models_dir, e))?;
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else { continue };
        if !models_dir.join(format!("{stem}.safetensors")).exists() {
            continue;
        }
        out.push(read_card(models_dir, stem)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Loads an installed model as a concrete detector (for tests and the bench).
pub fn load_yolo(models_dir: &Path, name: &str, opts: DetectOptions) -> Result<YoloDetector, VisionError> {
    let card = read_card(models_dir, name)?;
    let path: PathBuf = models_dir.join(format!("{name}.safetensors"));
    if !path.exists() {
        return Err(VisionError::ModelMissing { name: name.to_string(), path });
    }
    let dev = default_device();
    if dev.is_cpu() {
        crate::vision::blocked::keep_activation_memory();
    }
    let tensors =
        candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| VisionError::format(&path, crate::vision::candle_message(&e)))?;
    let tensors = tensors.into_iter().map(|(k, v)| v.to_device(&dev).map(|v| (k, v))).collect::<Result<HashMap<_, _>, _>>()?;
    let net = build_net(tensors, card.bn_eps, &dev, &path)?;
    if net.num_classes() != card.classes.len() {
        return Err(VisionError::Card(format!("{name}: card lists {} classes, weights have {}", card.classes.len(), net.num_classes())));
    }
    Ok(YoloDetector::new(net, card, opts, dev))
}

/// Loads an installed model behind the [`Detector`] trait.
pub fn load_detector(models_dir: &Path, name: &str, opts: DetectOptions) -> Result<Box<dyn Detector>, VisionError> {
    Ok(Box::new(load_yolo(models_dir, name, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_literal() {
        assert_eq!(parse_names("{0: 'Normal', 1: 'Fall'}"), Some(vec!["Normal".to_string(), "Fall".to_string()]));
        assert_eq!(parse_names("{1: 'b', 0: \"it's\"}"), Some(vec!["it's".to_string(), "b".to_string()]));
        assert_eq!(parse_names("{0: 'a', 2: 'c'}"), None, "gaps are rejected");
        assert_eq!(parse_names("[1,2]"), None);
        assert_eq!(parse_names("{}"), Some(vec![]));
        let tricky = vec!["it's".to_string(), "back\\slash".to_string(), "a, b: c".to_string()];
        assert_eq!(parse_names(&names_literal(&tricky)), Some(tricky));
    }

    #[test]
    fn roles_from_names() {
        assert_eq!(role_for("car", true), Role::Vehicle);
        assert_eq!(role_for("person", true), Role::PiiPerson);
        assert_eq!(role_for("dog", true), Role::Ignore);
        assert_eq!(role_for("Scratches", false), Role::Damage("scratch".into()));
        assert_eq!(role_for("paint-chip", false), Role::Damage("paint_damage".into()));
        assert_eq!(role_for("License Plate", false), Role::PiiPlate);
        assert_eq!(role_for("Fall", false), Role::Ignore);
        assert_eq!(role_for("car", false), Role::Ignore);
    }

    #[test]
    fn role_string_round_trip() {
        for s in ["vehicle", "damage:dent", "part:bumper", "pii:face", "pii:plate", "pii:person", "ignore"] {
            let r: Role = s.parse().expect("valid role");
            assert_eq!(r.to_string(), s);
        }
        assert!("damage:".parse::<Role>().is_err());
        assert!("wheel".parse::<Role>().is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("coco-yolov8n_2"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name(""));
    }
}
