//! OAuth 2.0 / OpenID Connect, client side: everything the engine says to a provider.
//!
//! The protocol is a handful of form posts and JSON answers, written here over the
//! workspace's reqwest (rustls) rather than through the `oauth2` crate: that crate's
//! HTTP layer loses status codes (a 409 becomes a parse error), refuses plain-http
//! revocation URLs even on loopback, and its device poller cannot apply our interval
//! cap. The primitives are still not hand-rolled: SHA-256 and base64url for PKCE come
//! from RustCrypto and `base64`, randomness from the OS through `getrandom`, HTTP from
//! hyper and reqwest.
//!
//! Architecture invariant: [`http`] is the only module that sends outbound HTTP, and
//! no function here touches a file. Secrets travel as [`Secret`]s and reach the wire
//! only inside request bodies and headers.
//!
//! [`Secret`]: latchkey_proto::secret::Secret

pub mod authcode;
pub mod client;
pub mod device;
pub mod discovery;
pub mod error;
pub mod http;
pub mod revoke;
pub mod token;
pub mod userinfo;

pub use error::OAuthError;
