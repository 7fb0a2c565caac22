# The AWS side of an iotrelay, as Terraform: a customer gateway for the relay's public address, a VPN connection
# with static routing and tunnel options that match iotrelay's defaults, the static route for the relay's inside
# address, route propagation into the VPC's route tables, and the devices' security group rule.
# docs/aws.md walks through the same steps by hand. After `terraform apply`:
#
#   terraform output -raw customer_gateway_configuration \
#     | iotrelay-sidecar import-aws --xml - --name plant-7 --namespace iot \
#         --inside-address "$(terraform output -raw relay_inside_address)" \
#         --remote-subnet "$(terraform output -raw vpc_cidr)" \
#         --forward admin:7000:100.64.1.10:7000:198.51.100.20/32 > relay.yaml

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

# The relay's public IPv4 address (the NAT's, when the node is behind one). AWS expects IKE from it.
resource "aws_customer_gateway" "relay" {
  bgp_asn    = 65000 # unused with static routing, but required
  ip_address = var.relay_public_ip
  type       = "ipsec.1"
  tags       = { Name = "iotrelay-${var.name}" }
}

resource "aws_vpn_gateway" "this" {
  count  = var.vpn_gateway_id == "" ? 1 : 0
  vpc_id = var.vpc_id
  tags   = { Name = "iotrelay-${var.name}" }
}

locals {
  vpn_gateway_id = var.vpn_gateway_id != "" ? var.vpn_gateway_id : aws_vpn_gateway.this[0].id
  # What iotrelay offers by default (IKEv2; AES-GCM and AES-CBC; SHA-2 and SHA-1; DH groups 2, 14, 19, 20).
  encryption = ["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"]
  integrity  = ["SHA1", "SHA2-256", "SHA2-384"]
  dh_groups  = [2, 14, 19, 20]
}

resource "aws_vpn_connection" "relay" {
  vpn_gateway_id      = local.vpn_gateway_id
  customer_gateway_id = aws_customer_gateway.relay.id
  type                = "ipsec.1"
  static_routes_only  = true # iotrelay does not speak BGP: the relay's inside address is a static route

  tunnel1_ike_versions                 = ["ikev2"]
  tunnel1_phase1_encryption_algorithms = local.encryption
  tunnel1_phase1_integrity_algorithms  = local.integrity
  tunnel1_phase1_dh_group_numbers      = local.dh_groups
  tunnel1_phase2_encryption_algorithms = local.encryption
  tunnel1_phase2_integrity_algorithms  = local.integrity
  tunnel1_phase2_dh_group_numbers      = local.dh_groups
  tunnel1_phase1_lifetime_seconds      = 28800
  tunnel1_phase2_lifetime_seconds      = 3600
  tunnel1_dpd_timeout_seconds          = 30
  tunnel1_dpd_timeout_action           = "clear"
  tunnel1_startup_action               = "add" # the relay initiates (startupAction: Start)

  tunnel2_ike_versions                 = ["ikev2"]
  tunnel2_phase1_encryption_algorithms = local.encryption
  tunnel2_phase1_integrity_algorithms  = local.integrity
  tunnel2_phase1_dh_group_numbers      = local.dh_groups
  tunnel2_phase2_encryption_algorithms = local.encryption
  tunnel2_phase2_integrity_algorithms  = local.integrity
  tunnel2_phase2_dh_group_numbers      = local.dh_groups
  tunnel2_phase1_lifetime_seconds      = 28800
  tunnel2_phase2_lifetime_seconds      = 3600
  tunnel2_dpd_timeout_seconds          = 30
  tunnel2_dpd_timeout_action           = "clear"
  tunnel2_startup_action               = "add"

  tags = { Name = "iotrelay-${var.name}" }
}

# AWS sends traffic for the VPC's answers into the VPN only for prefixes entered as static routes: the relay's
# inside address (every relayed packet comes from it).
resource "aws_vpn_connection_route" "relay_inside" {
  vpn_connection_id      = aws_vpn_connection.relay.id
  destination_cidr_block = "${var.relay_inside_address}/32"
}

# The VPC's route tables learn that route from the virtual private gateway. (With a Transit Gateway, add the
# static route to the Transit Gateway route table of the VPN attachment instead.)
resource "aws_vpn_gateway_route_propagation" "vpc" {
  for_each       = toset(var.route_table_ids)
  vpn_gateway_id = local.vpn_gateway_id
  route_table_id = each.value
}

# The devices accept the forwarded UDP from the relay's inside address.
resource "aws_security_group_rule" "devices_from_relay" {
  for_each          = toset([for p in var.device_udp_ports : tostring(p)])
  type              = "ingress"
  security_group_id = var.device_security_group_id
  protocol          = "udp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  cidr_blocks       = ["${var.relay_inside_address}/32"]
  description       = "iotrelay ${var.name}: forwarded UDP"
}
