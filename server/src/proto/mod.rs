//! The device wire layer: CoAP over TCP framing ([`coap`], RFC 8323) and the CBOR/JSON bodies of
//! the provisioning resources ([`body`]).
//!
//! This layer is shared by the server and the load generator. It must never be duplicated: any
//! change to the framing or to a body shape is made here, so that both sides keep speaking exactly
//! the same protocol.

pub mod body;
pub mod coap;
pub mod stream;
