//! Where a model runs: `auto | cpu | cuda:N`, with the dtype that device computes in.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::ModelError;

/// A requested device, as written in config files and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The first CUDA device when the binary was built with `cuda` and one is present; the CPU otherwise.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| ModelError::input("device", "auto, cpu, cuda or cuda:N with N a device number", s)),
                None => Err(ModelError::input("device", "auto, cpu, cuda or cuda:N", s)),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A resolved device and the dtype weights and activations use on it.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub dtype: DType,
    /// Why the placement differs from the request (e.g. "built without the `cuda` feature"), if it does.
    pub fallback: Option<String>,
}

impl Placement {
    pub fn cpu() -> Self {
        Placement { device: Device::Cpu, dtype: DType::F32, fallback: None }
    }

    /// A human name: `cpu`, `cuda:0`.
    pub fn device_name(&self) -> String {
        match &self.device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(_) => match self.device.location() {
                candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                _ => "cuda".into(),
            },
            _ => format!("{:?}", self.device.location()),
        }
    }
}

impl DeviceSpec {
    /// Resolves the request. A CUDA request that cannot be honoured falls back to the CPU with a log line:
    /// a search engine with a slow reranker is better than one that does not start.
    pub fn resolve(self) -> Placement {
        match self {
            DeviceSpec::Cpu => Placement::cpu(),
            DeviceSpec::Auto => match cuda_device(0) {
                Ok(p) => p,
                Err(_) => Placement::cpu(),
            },
            DeviceSpec::Cuda(n) => match cuda_device(n) {
                Ok(p) => p,
                Err(reason) => {
                    tracing::warn!("device cuda:{n} unavailable ({reason}); running on the CPU in f32");
                    Placement { fallback: Some(reason), ..Placement::cpu() }
                }
            },
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> Result<Placement, String> {
    let device = Device::new_cuda(n).map_err(|e| e.to_string())?;
    crate::cuda::tune_device(&device);
    let dtype = match std::env::var("SIEVE_CUDA_DTYPE").as_deref() {
        Ok("f16") => DType::F16,
        Ok("f32") => DType::F32,
        _ => DType::BF16,
    };
    Ok(Placement { device, dtype, fallback: None })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_n: usize) -> Result<Placement, String> {
    Err("this binary was built without the `cuda` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("CPU".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        let err = "tpu".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(err.contains("expected auto, cpu") && err.contains("tpu"), "{err}");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_request_falls_back_to_cpu() {
        let p = DeviceSpec::Cuda(0).resolve();
        assert!(p.device.is_cpu());
        assert_eq!(p.dtype, DType::F32);
        assert!(p.fallback.unwrap().contains("cuda"));
        assert!(DeviceSpec::Auto.resolve().fallback.is_none());
    }
}
