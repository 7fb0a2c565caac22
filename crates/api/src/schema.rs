//! Hand-written schema fragments: OpenAPI can't say "IPv4 address" or "canonical CIDR" precisely enough, so these
//! carry CEL rules (`x-kubernetes-validations`, Kubernetes >= 1.31 for `isIP`/`cidr`).

use schemars::{Schema, SchemaGenerator, json_schema};

use crate::duration::DURATION_PATTERN;

pub(crate) const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
pub(crate) const PROPOSAL_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

pub(crate) fn ipv4(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 15,
        "x-kubernetes-validations": [
            {"rule": "isIP(self) && ip(self).family() == 4", "message": "must be an IPv4 address"}
        ]
    })
}

pub(crate) fn ipv4_opt(g: &mut SchemaGenerator) -> Schema {
    ipv4(g)
}

pub(crate) fn cidr_rule() -> serde_json::Value {
    serde_json::json!({
        "rule": "isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self).masked() == cidr(self)",
        "message": "must be an IPv4 CIDR with host bits zero, like 100.64.0.0/16"
    })
}

pub(crate) fn cidr_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 32,
        "items": {
            "type": "string",
            "maxLength": 18,
            "x-kubernetes-validations": [cidr_rule()]
        }
    })
}

pub(crate) fn identity_opt(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253
    })
}

pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 32,
        "pattern": DURATION_PATTERN
    })
}

pub(crate) fn name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 63,
        "pattern": NAME_PATTERN
    })
}

pub(crate) fn proposals(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 16,
        "items": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": PROPOSAL_PATTERN}
    })
}

pub(crate) fn inside_cidr(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 18,
        "x-kubernetes-validations": [
            cidr_rule(),
            {
                "rule": "!isCIDR(self) || (cidr(self).prefixLength() == 30 && cidr('169.254.0.0/16').containsCIDR(cidr(self)))",
                "message": "must be a /30 inside 169.254.0.0/16"
            }
        ]
    })
}

pub(crate) fn announce_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 100,
        "items": {
            "type": "string",
            "maxLength": 18,
            "x-kubernetes-validations": [cidr_rule()]
        }
    })
}
