//! `iotrelay-sidecar import-aws`: turns AWS's description of a Site-to-Site VPN connection (the
//! `CustomerGatewayConfiguration` XML, or the console's "Generic" text download) plus what AWS does not know (the
//! relay's inside address, the VPC subnets, the forwards) into a ready `IotRelay` and its `Secret`, as YAML on
//! stdout. The result is validated with the CRD's rules and loaded back before it is printed; errors name the input
//! element, line or flag that caused them and never contain a pre-shared key, which goes only to stdout.
//!
//! `aws.rs`: the AWS-side model and AWS's algorithm names; `xml.rs`, `text.rs`: the two input formats;
//! `build.rs`: the spec, its validation and the YAML; `bgp.rs`: `spec.bgp` for dynamic-routing connections.

pub mod aws;
pub mod bgp;
pub mod build;
pub mod text;
pub mod xml;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use zeroize::Zeroizing;

pub use aws::ImportError;
pub use build::{Options, import};

/// Largest input accepted (AWS's documents are a few kilobytes).
const MAX_INPUT: u64 = 1 << 20;

/// The `import-aws` flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// AWS's CustomerGatewayConfiguration XML (from `aws ec2 describe-vpn-connections`); `-` reads stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "text", required_unless_present = "text")]
    pub xml: Option<PathBuf>,
    /// The "Generic" text of the console's "Download configuration"; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Name of the IotRelay (a DNS label).
    #[arg(long)]
    pub name: String,
    /// Namespace of the IotRelay and the Secret.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The relay's IPv4 address inside the tunnel (a static route on the VPN connection must cover it).
    #[arg(long, value_name = "IP")]
    pub inside_address: String,
    /// A VPC CIDR reachable through the tunnel (repeatable).
    #[arg(long = "remote-subnet", value_name = "CIDR", required = true)]
    pub remote_subnets: Vec<String>,
    /// A UDP forward NAME:LISTEN_PORT:TARGET_IP:TARGET_PORT[:ALLOWED_CIDR[,...]] (repeatable; without allowed
    /// sources every sender is allowed).
    #[arg(long = "forward", value_name = "SPEC")]
    pub forwards: Vec<String>,
    /// Name of the Secret holding the pre-shared keys (default `<name>-psk`).
    #[arg(long)]
    pub secret_name: Option<String>,
    /// The node's own outside IPv4 address, when it differs from the customer gateway's (behind NAT): it becomes
    /// `localAddress`, and the customer gateway's address `localIdentity`.
    #[arg(long, value_name = "IP")]
    pub local_address: Option<String>,
}

/// Runs the subcommand: YAML on stdout, or one error line on stderr and exit code 1.
pub fn main(args: Args) -> ExitCode {
    match run(&args) {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("import-aws: writing stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("import-aws: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Zeroizing<String>, ImportError> {
    let (path, is_xml) = match (&args.xml, &args.text) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p, false),
        (None, None) => return Err(ImportError::new("flags", "one of --xml FILE or --text FILE is required")),
    };
    let input = read_input(path)?;
    let source = if path.as_os_str() == "-" { "stdin".to_string() } else { path.display().to_string() };
    let tunnels = if is_xml { xml::parse(&input) } else { text::parse(&input) }
        .map_err(|e| ImportError::new(format!("{source}: {}", e.at), e.message))?;
    let opts = Options {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        inside_address: args.inside_address.clone(),
        remote_subnets: args.remote_subnets.clone(),
        forwards: args.forwards.clone(),
        secret_name: args.secret_name.clone(),
        local_address: args.local_address.clone(),
        source,
    };
    import(&tunnels, &opts)
}

/// The whole input, wiped when dropped (it holds the keys).
fn read_input(path: &PathBuf) -> Result<Zeroizing<String>, ImportError> {
    let at = || if path.as_os_str() == "-" { "stdin".to_string() } else { path.display().to_string() };
    let mut buf = Zeroizing::new(Vec::new());
    let r = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(MAX_INPUT + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
    };
    r.map_err(|e| ImportError::new(at(), format!("cannot read: {}", e.kind())))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(ImportError::new(at(), "larger than 1 MiB: not an AWS VPN configuration"));
    }
    match std::str::from_utf8(&buf) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(e) => Err(ImportError::new(at(), format!("not UTF-8 text (byte {})", e.valid_up_to()))),
    }
}
