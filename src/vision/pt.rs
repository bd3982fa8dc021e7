//! Reader for Ultralytics training checkpoints (`best.pt`, `last.pt`): a zip holding a pickle
//! of a dict whose `model` (or `ema`) entry is the whole pickled `DetectionModel`, with tensor
//! storages (often fp16) as separate zip entries.
//!
//! candle's pickle VM ([`candle_core::pickle::Stack`]) does the unpickling; what it lacks is a
//! walk through nested `nn.Module` objects (it only understands flat state dicts), which is
//! what this file adds: we follow `_modules` recursively, collect `_parameters` and
//! `_buffers` under their dotted names, read the class names (`names`) and BatchNorm `eps`.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{DType, Device, Tensor};

use crate::vision::VisionError;

pub struct PtWeights {
    /// Dotted names as in a PyTorch state dict (`model.0.conv.weight`, `model.0.bn.running_var`).
    pub tensors: HashMap<String, Tensor>,
    /// Class names in id order, from the model's `names` attribute.
    pub names: Vec<String>,
    /// BatchNorm eps (Ultralytics sets 1e-3; read from the first BatchNorm2d found).
    pub bn_eps: Option<f64>,
    /// The checkpoint's `license` string if present.
    pub licence: Option<String>,
}

fn fmt_err(path: &Path, reason: impl Into<String>) -> VisionError {
    VisionError::format(path, reason)
}

/// Looks up a string key in a pickled dict.
fn dict_get<'a>(d: &'a [(Object, Object)], key: &str) -> Option<&'a Object> {
    d.iter().find_map(|(k, v)| match k {
        Object::Unicode(s) if s == key => Some(v),
        _ => None,
    })
}

/// The instance dict of a pickled object: `Build { Reduce(class, args), state }` → state.
fn instance_state(obj: &Object) -> Option<(&Object, &[(Object, Object)])> {
    match obj {
        Object::Build { callable, args } => match args.as_ref() {
            Object::Dict(d) => Some((callable.as_ref(), d.as_slice())),
            _ => None,
        },
        _ => None,
    }
}

fn class_name_of(callable: &Object) -> Option<&str> {
    match callable {
        Object::Reduce { callable, .. } => match callable.as_ref() {
            Object::Class { class_name, .. } => Some(class_name.as_str()),
            _ => None,
        },
        _ => None,
    }
}

struct Walker<'a> {
    dir: PathBuf,
    infos: Vec<TensorInfo>,
    bn_eps: Option<f64>,
    path: &'a Path,
}

impl Walker<'_> {
    fn module(&mut self, obj: &Object, prefix: &str) -> Result<(), VisionError> {
        let Some((callable, state)) = instance_state(obj) else { return Ok(()) };
        if self.bn_eps.is_none() && class_name_of(callable) == Some("BatchNorm2d") {
            if let Some(Object::Float(eps)) = dict_get(state, "eps") {
                self.bn_eps = Some(*eps);
            }
        }
        for key in ["_parameters", "_buffers"] {
            if let Some(Object::Dict(entries)) = dict_get(state, key) {
                for (name, value) in entries {
                    let Object::Unicode(n) = name else { continue };
                    if matches!(value, Object::None) {
                        continue;
                    }
                    let full = Object::Unicode(format!("{prefix}{n}"));
                    match value.clone().into_tensor_info(full, &self.dir) {
                        Ok(Some(info)) => self.infos.push(info),
                        // Not a tensor (an unknown extension of the module): not a weight.
                        Ok(None) => {}
                        Err(e) => return Err(fmt_err(self.path, format!("tensor {prefix}{n}: {}", crate::vision::candle_message(&e)))),
                    }
                }
            }
        }
        if let Some(Object::Dict(children)) = dict_get(state, "_modules") {
            for (name, child) in children {
                let Object::Unicode(n) = name else { continue };
                self.module(child, &format!("{prefix}{n}."))?;
            }
        }
        Ok(())
    }
}

/// Reads the class names from `names`: a dict {0: 'a', ...} or a list.
fn read_names(obj: &Object) -> Vec<String> {
    match obj {
        Object::Dict(d) => {
            let mut v: Vec<(i64, String)> = d
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Object::Int(i), Object::Unicode(s)) => Some((*i as i64, s.clone())),
                    (Object::Long(i), Object::Unicode(s)) => Some((*i, s.clone())),
                    _ => None,
                })
                .collect();
            v.sort_by_key(|(i, _)| *i);
            v.into_iter().map(|(_, s)| s).collect()
        }
        Object::List(l) | Object::Tuple(l) => l
            .iter()
            .filter_map(|o| match o {
                Object::Unicode(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub fn read_pt(path: &Path) -> Result<PtWeights, VisionError> {
    let file = std::fs::File::open(path).map_err(|e| VisionError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| fmt_err(path, format!("not a PyTorch zip checkpoint: {e}")))?;
    let pkl_name = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| fmt_err(path, "no data.pkl inside the checkpoint"))?;
    let dir = PathBuf::from(pkl_name.trim_end_matches(".pkl"));
    let root = {
        let entry = zip.by_name(&pkl_name).map_err(|e| fmt_err(path, e.to_string()))?;
        let mut reader = BufReader::new(entry);
        let mut stack = Stack::empty();
        stack.read_loop(&mut reader).map_err(|e| fmt_err(path, format!("pickle: {}", crate::vision::candle_message(&e))))?;
        stack.finalize().map_err(|e| fmt_err(path, format!("pickle: {}", crate::vision::candle_message(&e))))?
    };
    let Object::Dict(top) = &root else {
        return Err(fmt_err(path, "checkpoint is not a dict (expected an Ultralytics training checkpoint)"));
    };
    // Ultralytics stores the EMA weights as `model` after training ends; a mid-training
    // `last.pt` has both, and `ema` is the one Ultralytics evaluates with.
    let model = [dict_get(top, "ema"), dict_get(top, "model")].into_iter().flatten().find(|o| !matches!(o, Object::None));
    let Some(model) = model else {
        // Not a training checkpoint: maybe a plain state dict (`torch.save(model.state_dict())`).
        return read_state_dict(path, &mut zip, top, &dir);
    };
    let licence = match dict_get(top, "license") {
        Some(Object::Unicode(s)) => Some(s.clone()),
        _ => None,
    };
    let Some((_, state)) = instance_state(model) else {
        return Err(fmt_err(path, "`model` is not a pickled module"));
    };
    let names = dict_get(state, "names").map(read_names).unwrap_or_default();

    let mut walker = Walker { dir, infos: Vec::new(), bn_eps: None, path };
    walker.module(model, "")?;

    let mut tensors = HashMap::new();
    for info in walker.infos {
        if info.name.ends_with("num_batches_tracked") {
            continue;
        }
        let t = read_tensor(&mut zip, &info).map_err(|e| fmt_err(path, format!("{}: {e}", info.name)))?;
        tensors.insert(info.name.clone(), t.to_dtype(DType::F32).map_err(|e| fmt_err(path, crate::vision::candle_message(&e)))?);
    }
    Ok(PtWeights { tensors, names, bn_eps: walker.bn_eps, licence })
}

/// A flat `{name: tensor}` pickle. No class names or BN eps in it: defaults apply.
fn read_state_dict<R: std::io::Read + std::io::Seek>(
    path: &Path,
    zip: &mut zip::ZipArchive<R>,
    top: &[(Object, Object)],
    dir: &Path,
) -> Result<PtWeights, VisionError> {
    let mut tensors = HashMap::new();
    for (k, v) in top {
        if let Ok(Some(info)) = v.clone().into_tensor_info(k.clone(), dir) {
            if info.name.ends_with("num_batches_tracked") {
                continue;
            }
            let t = read_tensor(zip, &info).map_err(|e| fmt_err(path, format!("{}: {e}", info.name)))?;
            tensors.insert(info.name.clone(), t.to_dtype(DType::F32).map_err(|e| fmt_err(path, crate::vision::candle_message(&e)))?);
        }
    }
    if tensors.is_empty() {
        return Err(fmt_err(path, "neither an Ultralytics checkpoint (no `model` entry) nor a state dict of tensors"));
    }
    Ok(PtWeights { tensors, names: Vec::new(), bn_eps: None, licence: None })
}

/// Reads one storage slice. Only contiguous tensors (all that `torch.save` of a module makes).
fn read_tensor<R: std::io::Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>, info: &TensorInfo) -> Result<Tensor, String> {
    if !info.layout.is_contiguous() {
        return Err("non-contiguous tensor storage is not supported".into());
    }
    let mut entry = zip.by_name(&info.path).map_err(|e| e.to_string())?;
    let start = info.layout.start_offset();
    let elem = info.dtype.size_in_bytes();
    let n = info.layout.shape().elem_count();
    let needed = start as u64 + (n * elem) as u64;
    if entry.size() < needed {
        return Err(format!("storage holds {} bytes, tensor needs {needed}", entry.size()));
    }
    std::io::copy(&mut entry.by_ref().take(start as u64), &mut std::io::sink()).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; n * elem];
    entry.read_exact(&mut buf).map_err(|e| e.to_string())?;
    // Storages are little-endian (`byteorder` entry); every machine we ship on is too.
    Tensor::from_raw_buffer(&buf, info.dtype, info.layout.dims(), &Device::Cpu).map_err(|e| crate::vision::candle_message(&e))
}
