//! Regenerate the benchmarks' committed PKI (`benches/fixtures/`). The instruction-count baselines
//! depend on these bytes: update `results/instructions.json` in the same commit.

use dps_benches::pki::{fixture_dir, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(fixture_dir);
    std::fs::create_dir_all(&dir)?;
    for (name, pem) in generate()? {
        std::fs::write(dir.join(&name), pem)?;
    }
    println!("wrote fixtures to {}", dir.display());
    Ok(())
}
