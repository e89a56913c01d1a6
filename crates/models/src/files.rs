//! A model on disk: a Hugging Face-layout directory with `config.json`, one or more `*.safetensors` files
//! (memory-mapped) and `tokenizer.json`. Every failure names the file and what was expected of it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

/// An opened model directory: parsed config, mapped weights, loaded tokenizer.
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: Value,
    weights: MmapedSafetensors,
    names: HashSet<String>,
    pub tokenizer: Tokenizer,
}

impl std::fmt::Debug for ModelDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDir").field("dir", &self.dir).field("tensors", &self.names.len()).finish()
    }
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<ModelDir> {
        if !dir.is_dir() {
            return Err(ModelError::NoModel { dir: dir.to_path_buf() });
        }
        let config = read_config(dir)?;
        let files = safetensor_files(dir)?;
        for f in &files {
            check_safetensors_header(f)?;
        }
        let weights = map_weights(&files)?;
        let names = weights.tensors().into_iter().map(|(n, _)| n).collect();
        let tokenizer = load_tokenizer(dir)?;
        Ok(ModelDir { dir: dir.to_path_buf(), config, weights, names, tokenizer })
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn tokenizer_file(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Loads tensor `name`, checks its shape, and converts it to `dtype` on `device`.
    pub fn tensor(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        if !self.has(name) {
            return Err(ModelError::MissingTensor {
                dir: self.dir.clone(),
                tensor: name.to_string(),
                expected: format!("{shape:?}"),
            });
        }
        let t = self.weights.load(name, &Device::Cpu)?;
        if t.dims() != shape {
            return Err(ModelError::TensorShape {
                dir: self.dir.clone(),
                tensor: name.to_string(),
                expected: format!("{shape:?}"),
                found: format!("{:?}", t.dims()),
            });
        }
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }

    /// `config.json` field as an unsigned integer.
    pub fn usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?.ok_or_else(|| self.bad(field, "a positive integer", "nothing"))
    }

    pub fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| self.bad(field, "a positive integer", v)),
        }
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(field, "a number", v)),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.bad(field, "true or false", v)),
        }
    }

    pub fn opt_str(&self, field: &str) -> Option<&str> {
        self.config.get(field).and_then(Value::as_str)
    }

    pub fn bad(&self, field: &str, expected: &str, found: impl std::fmt::Display) -> ModelError {
        ModelError::InvalidConfig {
            file: self.config_file(),
            field: field.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    /// The architecture named by `config.json` (`model_type`, else the first of `architectures`).
    pub fn architecture(&self) -> String {
        if let Some(t) = self.opt_str("model_type") {
            return t.to_string();
        }
        self.config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("unknown (config.json names neither model_type nor architectures)")
            .to_string()
    }

    /// Tokenizer id of a token that must exist (e.g. a special token).
    pub fn token_id(&self, token: &str) -> Result<u32> {
        self.tokenizer.token_to_id(token).ok_or_else(|| ModelError::Tokenizer {
            file: self.tokenizer_file(),
            message: format!("expected the token {token:?} in the vocabulary, found none"),
        })
    }
}

fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: "config.json".into(),
            expected: "the model's Hugging Face config".into(),
        },
        _ => ModelError::Io { path: path.clone(), message: "cannot read".into(), source: e },
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
        file: path.clone(),
        field: "(file)".into(),
        expected: "a JSON object".into(),
        found: format!("invalid JSON ({e})"),
    })?;
    if !v.is_object() {
        return Err(ModelError::InvalidConfig {
            file: path,
            field: "(file)".into(),
            expected: "a JSON object".into(),
            found: crate::files::json_kind(&v).into(),
        });
    }
    Ok(v)
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| ModelError::Io {
        path: dir.to_path_buf(),
        message: "cannot list the model directory".into(),
        source: e,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: "model.safetensors".into(),
            expected: "the weights as one or more *.safetensors files".into(),
        });
    }
    Ok(files)
}

/// Checks the 8-byte header length and the JSON header before mapping, so a truncated or foreign file gets a
/// message that names it instead of a generic deserialisation error.
fn check_safetensors_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let corrupt = |message: String| ModelError::CorruptWeights { file: path.to_path_buf(), message };
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        message: "cannot open".into(),
        source: e,
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| corrupt(format!("expected at least 8 bytes, found {len}")))?;
    let header = u64::from_le_bytes(n);
    if header == 0 || header > 100 << 20 || 8 + header > len {
        return Err(corrupt(format!(
            "expected an 8-byte header length followed by a JSON header, found length {header} in a {len}-byte file"
        )));
    }
    let mut buf = vec![0u8; header as usize];
    f.read_exact(&mut buf).map_err(|e| corrupt(format!("cannot read the header: {e}")))?;
    let v: Value = serde_json::from_slice(&buf)
        .map_err(|e| corrupt(format!("expected a JSON header, found invalid JSON ({e})")))?;
    let mut end = 0u64;
    if let Some(obj) = v.as_object() {
        for (name, t) in obj {
            if name == "__metadata__" {
                continue;
            }
            if let Some(hi) = t.get("data_offsets").and_then(|o| o.get(1)).and_then(Value::as_u64) {
                end = end.max(hi);
            }
        }
    }
    if 8 + header + end > len {
        return Err(corrupt(format!(
            "the header promises {} bytes of tensor data, the file holds {} (truncated download?)",
            end,
            len - 8 - header
        )));
    }
    Ok(())
}

// The one place this crate maps files. Safetensors are immutable model files; like every Hugging Face
// loader, Sieve requires that they are not modified while the model is loaded.
#[allow(unsafe_code)]
fn map_weights(files: &[PathBuf]) -> Result<MmapedSafetensors> {
    // SAFETY: the mapped files are read-only model weights that nothing writes while they are mapped;
    // their headers were validated above.
    unsafe { MmapedSafetensors::multi(files) }.map_err(|e| ModelError::CorruptWeights {
        file: files.first().cloned().unwrap_or_default(),
        message: e.to_string(),
    })
}

fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: "tokenizer.json".into(),
            expected: "a Hugging Face `tokenizers` JSON file".into(),
        });
    }
    let mut tok = Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer {
        file: path.clone(),
        message: format!("expected a Hugging Face tokenizer.json, could not parse it: {e}"),
    })?;
    // Sieve pads and truncates itself (packed batches, template-aware truncation).
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| ModelError::Tokenizer { file: path, message: e.to_string() })?;
    Ok(tok)
}
