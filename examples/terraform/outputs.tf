# Inputs of `iotrelay-sidecar import-aws` (see main.tf).

output "customer_gateway_configuration" {
  description = "AWS's XML description of the VPN connection, with the pre-shared keys: pipe it into import-aws --xml -."
  value       = aws_vpn_connection.relay.customer_gateway_configuration
  sensitive   = true
}

output "relay_inside_address" {
  description = "For import-aws --inside-address."
  value       = var.relay_inside_address
}

output "vpc_cidr" {
  description = "For import-aws --remote-subnet."
  value       = data.aws_vpc.this.cidr_block
}

output "tunnel_addresses" {
  description = "AWS's outside addresses of the two tunnels (the IotRelay's tunnels[].peerAddress)."
  value       = [aws_vpn_connection.relay.tunnel1_address, aws_vpn_connection.relay.tunnel2_address]
}
