//! Lambda event ↔ domain mapping: the one implementation of every route, run unchanged by the Lambda functions and
//! by the local harness.
//!
//! - [`authorizer`]: the `$connect` REQUEST authorizer (JWT → IAM policy + identity context).
//! - [`connect`], [`disconnect`]: connection lifecycle, auto-joined rooms, presence.
//! - [`message`]: the `$default` route; parses the frame and dispatches on `action` to [`membership`], [`chat`],
//!   [`presence`], [`notifications`] and [`calls`].
//! - [`emit`]: internal services pushing events to rooms, users and connections.
//! - [`call_timeout`]: the missed-call queue's consumer, which expires calls nobody answered.
//! - [`delivery`]: sending frames and pruning gone connections, which call each other.
//!
//! Handlers see the adapters only through the ports in [`Deps`]; which adapters those are is decided by the
//! composition roots (`crate::cloud` for the Lambdas, the harness for itself). Errors ([`errors`]) are mapped to
//! client-visible frames or statuses here, at the edge, and nowhere deeper.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::push::Pusher;
use crate::store::Store;
use crate::timer::Timer;

pub mod authorizer;
pub mod call_timeout;
pub mod caller;
pub mod calls;
pub mod chat;
pub mod connect;
pub mod delivery;
pub mod disconnect;
pub mod emit;
pub mod errors;
pub mod limits;
pub mod membership;
pub mod message;
pub mod notifications;
pub mod presence;
pub mod tokens;

pub use errors::{ActionError, ActionResult, HandlerError};

/// Everything a handler needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub pusher: Arc<dyn Pusher>,
    pub verifier: TokenVerifier,
    pub timer: Arc<dyn Timer>,
    pub started_at: DateTime<Utc>,
}

impl Deps {
    pub fn new(config: Config, store: Arc<dyn Store>, pusher: Arc<dyn Pusher>, timer: Arc<dyn Timer>) -> Self {
        let verifier = TokenVerifier::new(&config.jwt);
        Self { config: Arc::new(config), store, pusher, verifier, timer, started_at: Utc::now() }
    }
}

/// API Gateway answers 401 only when the authorizer fails with exactly the message `Unauthorized`.
impl From<authorizer::AuthorizerError> for lambda_runtime::Diagnostic {
    fn from(error: authorizer::AuthorizerError) -> Self {
        lambda_runtime::Diagnostic { error_type: "Unauthorized".to_owned(), error_message: error.to_string() }
    }
}
