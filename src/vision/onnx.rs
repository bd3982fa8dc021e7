//! Minimal ONNX reader: just enough of `onnx.proto` (hand-written prost messages, no `protoc`)
//! to take the weight initializers and the metadata out of an Ultralytics export. We never run
//! the ONNX graph: the network is our own ([`crate::vision::yolo`]); only the weights and the
//! class names come from the file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use prost::Message;

use crate::vision::VisionError;

// Field numbers from onnx/onnx.proto3 (ModelProto, GraphProto, TensorProto,
// StringStringEntryProto). Fields we do not read are skipped by prost.

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// fp16 values are stored here as their bit pattern when not in raw_data.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// 1 = EXTERNAL (weights in a side file): not supported, Ultralytics never does it for YOLO.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

const ONNX_FLOAT: i32 = 1;
const ONNX_FLOAT16: i32 = 10;

/// What we take from an ONNX file.
pub struct OnnxWeights {
    /// `model.N....` initializers, converted to f32.
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

pub fn read_onnx(path: &Path, bytes: &[u8]) -> Result<OnnxWeights, VisionError> {
    let model = ModelProto::decode(bytes).map_err(|e| VisionError::format(path, format!("not a valid ONNX protobuf: {e}")))?;
    let metadata = model.metadata_props.into_iter().map(|p| (p.key, p.value)).collect();
    let graph = model.graph.ok_or_else(|| VisionError::format(path, "ONNX file has no graph"))?;
    let mut tensors = HashMap::new();
    for t in graph.initializer {
        // Exporter constants (`/model.22/Constant_output_0`, `onnx::Split_137`) are graph
        // plumbing we re-create ourselves; only named module weights matter.
        if !t.name.starts_with("model.") {
            continue;
        }
        if t.data_location == 1 {
            return Err(VisionError::format(path, format!("{}: external tensor data is not supported", t.name)));
        }
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| VisionError::format(path, format!("{}: negative dimension", t.name)))?;
        let n: usize = dims.iter().product();
        let values: Vec<f32> = match t.data_type {
            ONNX_FLOAT if !t.raw_data.is_empty() => {
                if t.raw_data.len() != n * 4 {
                    return Err(VisionError::format(path, format!("{}: {} bytes for {n} floats", t.name, t.raw_data.len())));
                }
                t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            ONNX_FLOAT => t.float_data,
            ONNX_FLOAT16 if !t.raw_data.is_empty() => {
                if t.raw_data.len() != n * 2 {
                    return Err(VisionError::format(path, format!("{}: {} bytes for {n} halves", t.name, t.raw_data.len())));
                }
                t.raw_data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            ONNX_FLOAT16 => t.int32_data.iter().map(|&v| half::f16::from_bits(v as u16).to_f32()).collect(),
            other => return Err(VisionError::format(path, format!("{}: unsupported tensor data type {other}", t.name))),
        };
        if values.len() != n {
            return Err(VisionError::format(path, format!("{}: {} values for shape {dims:?}", t.name, values.len())));
        }
        let tensor = Tensor::from_vec(values, dims, &Device::Cpu)?.to_dtype(DType::F32)?;
        tensors.insert(t.name, tensor);
    }
    Ok(OnnxWeights { tensors, metadata })
}
