//! iotrelay-relay: the sans-IO UDP NAT relay (sessions, allow-lists, drop accounting).
