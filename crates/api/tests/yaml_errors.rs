//! A broken standalone file never echoes a secret value: YAML errors name a document and a position, not the text
//! around them (a parser that quotes source lines would print the pre-shared key sitting next to the error).

use iotrelay_api::standalone::load_yaml;

const PSK: &str = "Zx9PskValue4711Leak";
const PSK_B64: &str = "Wng5UHNrVmFsdWU0NzExTGVhaw==";

const RELAY: &str = "apiVersion: iotrelay.dev/v1alpha1
kind: IotRelay
metadata: {name: plant-7, namespace: iot}
spec:
  insideAddress: 100.127.0.1
  remoteSubnets: [100.64.0.0/16]
  tunnels:
    - {name: tunnel1, peerAddress: 198.51.100.2, preSharedKeySecretRef: {name: aws-vpn, key: tunnel1}}
  forwards: []
---
";

/// Broken Secret documents, each with the PSK next to (or inside) the error.
fn broken() -> Vec<(&'static str, String)> {
    let secret = |body: &str| format!("{RELAY}apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-vpn}}\n{body}");
    vec![
        ("unterminated quote", secret(&format!("stringData:\n  tunnel1: \"{PSK}\n  tunnel2: x\n"))),
        ("mapping in a plain scalar", secret(&format!("stringData:\n  tunnel1: {PSK}: {PSK}\n"))),
        ("bad indentation", secret(&format!("stringData:\n  tunnel1: {PSK}\n bad: {PSK}\n"))),
        ("tab indentation", secret(&format!("stringData:\n\ttunnel1: {PSK}\n"))),
        ("unclosed flow map", secret(&format!("stringData: {{tunnel1: {PSK}\n"))),
        ("sequence instead of a string", secret(&format!("stringData:\n  tunnel1: [{PSK}]\n"))),
        ("map instead of a string", secret(&format!("stringData:\n  tunnel1: {{v: {PSK}}}\n"))),
        ("data not base64", secret(&format!("data:\n  tunnel1: \"{PSK}!!\"\n"))),
        ("base64 value in a bad document", secret(&format!("data:\n  tunnel1: {PSK_B64}\n  - {PSK_B64}\n"))),
        ("duplicate key", secret(&format!("stringData:\n  tunnel1: {PSK}\n  tunnel1: {PSK}\n"))),
        ("bad anchor", secret(&format!("stringData:\n  tunnel1: *{PSK}\n"))),
        ("bad tag", secret(&format!("stringData:\n  tunnel1: !<{PSK}> x\n"))),
        ("secret as a key", secret(&format!("stringData:\n  {PSK}: [\n"))),
        ("psk as a whole document", format!("{RELAY}{PSK}: \"\n")),
        ("psk pasted as a document of its own", format!("{RELAY}{PSK}\n")),
        ("psk in a list document", format!("{RELAY}- {PSK}\n")),
    ]
}

#[test]
fn yaml_errors_never_echo_a_secret_value() {
    for (what, text) in broken() {
        let err = match load_yaml(&text) {
            Ok(_) => continue, // some parsers accept a case; then nothing is printed
            Err(e) => format!("{e} / {e:?}"),
        };
        for needle in [PSK, PSK_B64, &PSK[..8], &PSK[8..]] {
            assert!(!err.contains(needle), "{what}: the error echoes secret text {needle:?}: {err}");
        }
    }
}

#[test]
fn yaml_errors_still_say_where() {
    let text =
        format!("{RELAY}apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-vpn}}\nstringData:\n  tunnel1: \"{PSK}\n");
    let err = load_yaml(&text).expect_err("an unterminated quote is an error").to_string();
    assert!(err.starts_with("document 2:"), "{err}");
    assert!(err.contains("line"), "no position: {err}");
}
