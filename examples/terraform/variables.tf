variable "name" {
  description = "Name of the relay (used in AWS tags; the IotRelay's name)."
  type        = string
  default     = "plant-7"
}

variable "vpc_id" {
  description = "The VPC the devices are in."
  type        = string
}

variable "vpn_gateway_id" {
  description = "An existing virtual private gateway attached to the VPC; empty = create one."
  type        = string
  default     = ""
}

variable "relay_public_ip" {
  description = "The relay host's public IPv4 address (the NAT's public address when the host is behind NAT)."
  type        = string
}

variable "relay_inside_address" {
  description = "The relay's address inside the tunnel (IotRelay spec.insideAddress); must not be inside the VPC."
  type        = string
  default     = "100.127.0.1"
}

variable "route_table_ids" {
  description = "Route tables of the devices' subnets: they learn the route to the inside address from the VPN."
  type        = list(string)
  default     = []
}

variable "device_security_group_id" {
  description = "Security group of the devices; gets an ingress rule for UDP from the inside address."
  type        = string
}

variable "device_udp_ports" {
  description = "UDP ports of the devices the relay forwards to."
  type        = list(number)
  default     = [7000]
}
