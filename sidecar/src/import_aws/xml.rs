//! Reads the XML document AWS returns as a VPN connection's `CustomerGatewayConfiguration`
//! (`aws ec2 describe-vpn-connections`): `vpn_connection/ipsec_tunnel/...`. Parsing is roxmltree's (a read-only
//! tree with byte positions, no DTDs); this file only walks the elements it knows and ignores the rest (tunnel
//! interface settings). Errors name the element path and its line; XML errors name only the position,
//! because a parser's message could quote a piece of the document, and the document holds the keys.

use roxmltree::{Document, Node};
use zeroize::Zeroizing;

use super::aws::{AwsTunnel, BgpFields, Field, ImportError, Phase, Psk};

/// The tunnels described by the document, in document order.
pub fn parse(text: &str) -> Result<Vec<AwsTunnel>, ImportError> {
    let doc = Document::parse(text).map_err(|e| xml_error(text, &e))?;
    let root = doc.root_element();
    if root.tag_name().name() != "vpn_connection" {
        return Err(ImportError::new(
            at(&doc, root, root.tag_name().name()),
            "expected a <vpn_connection> document (the CustomerGatewayConfiguration of describe-vpn-connections)",
        ));
    }
    let mut tunnels = Vec::new();
    for (i, t) in root.children().filter(|n| n.has_tag_name("ipsec_tunnel")).enumerate() {
        let path = format!("ipsec_tunnel[{}]", i + 1);
        let mut tunnel = AwsTunnel::new(at(&doc, t, &path));
        let field = |rel: &str| -> Option<Field> {
            let n = find(t, rel)?;
            Some(Field::new(n.text().unwrap_or("").trim(), at(&doc, n, &format!("{path}/{rel}"))))
        };
        tunnel.customer_gateway = field("customer_gateway/tunnel_outside_address/ip_address");
        tunnel.vpn_gateway = field("vpn_gateway/tunnel_outside_address/ip_address");
        tunnel.psk = find(t, "ike/pre_shared_key").map(|n| Psk {
            value: Zeroizing::new(n.text().unwrap_or("").trim().to_string()),
            at: at(&doc, n, &format!("{path}/ike/pre_shared_key")),
        });
        tunnel.ike = Phase {
            encryption: field("ike/encryption_protocol"),
            integrity: field("ike/authentication_protocol"),
            dh_group: field("ike/perfect_forward_secrecy"),
            lifetime: field("ike/lifetime"),
        };
        tunnel.ipsec = Phase {
            encryption: field("ipsec/encryption_protocol"),
            integrity: field("ipsec/authentication_protocol"),
            dh_group: field("ipsec/perfect_forward_secrecy"),
            lifetime: field("ipsec/lifetime"),
        };
        // AWS writes <delay>; <interval> is accepted too.
        tunnel.dpd_interval =
            field("ipsec/dead_peer_detection/interval").or_else(|| field("ipsec/dead_peer_detection/delay"));
        tunnel.dpd_retries = field("ipsec/dead_peer_detection/retries");
        tunnel.bgp = BgpFields {
            local_asn: field("customer_gateway/bgp/asn"),
            aws_asn: field("vpn_gateway/bgp/asn"),
            hold_time: field("vpn_gateway/bgp/hold_time").or_else(|| field("customer_gateway/bgp/hold_time")),
            inside_address: field("customer_gateway/tunnel_inside_address/ip_address"),
            inside_prefix: field("customer_gateway/tunnel_inside_address/network_cidr"),
        };
        tunnels.push(tunnel);
    }
    if tunnels.is_empty() {
        return Err(ImportError::new(at(&doc, root, "vpn_connection"), "no <ipsec_tunnel> element"));
    }
    Ok(tunnels)
}

/// The first descendant along `a/b/c` (element names).
fn find<'a, 'i>(from: Node<'a, 'i>, rel: &str) -> Option<Node<'a, 'i>> {
    rel.split('/').try_fold(from, |n, name| n.children().find(|c| c.has_tag_name(name)))
}

fn at(doc: &Document, n: Node, path: &str) -> String {
    format!("{path} (line {})", doc.text_pos_at(n.range().start).row)
}

/// A description of an XML syntax error by its kind and position only.
fn xml_error(text: &str, e: &roxmltree::Error) -> ImportError {
    use roxmltree::Error as E;
    let what = match e {
        E::UnexpectedEndOfStream | E::UnclosedRootNode => {
            let lines = text.lines().count().max(1);
            return ImportError::new(
                format!("XML line {lines}"),
                "the document ends before its elements are closed (truncated?)",
            );
        }
        E::NoRootNode => return ImportError::new("XML", "no root element (empty or not an XML document)"),
        E::DtdDetected => return ImportError::new("XML", "DTDs are not accepted"),
        E::UnexpectedCloseTag(..) => "a closing tag that does not match its opening tag",
        E::UnknownEntityReference(..) | E::MalformedEntityReference(..) => "an unknown or malformed entity reference",
        E::InvalidAttributeValue(..) | E::DuplicatedAttribute(..) => "an invalid attribute",
        E::InvalidName(..) => "an invalid element or attribute name",
        E::NonXmlChar(..) | E::InvalidChar(..) | E::InvalidChar2(..) => "an unexpected character",
        _ => "invalid XML",
    };
    let p = e.pos();
    ImportError::new(format!("XML line {}, column {}", p.row, p.col), format!("malformed: {what}"))
}
