//! Prints the IotRelay CRD YAML; with `--write`, writes the committed copies (run from the repository root).

fn main() -> anyhow::Result<()> {
    let yaml = iotrelay_operator::crdgen::crd_yaml()?;
    if std::env::args().any(|a| a == "--write") {
        for p in iotrelay_operator::crdgen::CRD_PATHS {
            if let Some(dir) = std::path::Path::new(p).parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(p, &yaml)?;
            eprintln!("wrote {p}");
        }
    } else {
        print!("{yaml}");
    }
    Ok(())
}
