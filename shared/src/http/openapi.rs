//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the request and response
//! types, so it cannot drift from the code. Served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{client, console, errors, internal};
use crate::handlers::emit;
use crate::handlers::notifications::NotificationInput;
use crate::protocol::payloads;

#[derive(OpenApi)]
#[openapi(
    info(title = "Bellhop HTTP API", description = "Internal emit, room grants, health, and client history and notifications over HTTP."),
    paths(
        super::health,
        internal::emit,
        internal::grant,
        internal::revoke,
        internal::room_info,
        internal::force_disconnect,
        client::history,
        client::conversations,
        client::mark_read,
        client::notifications,
        client::read_notifications,
        client::me,
        console::protocol,
        console::dev_token,
        console::user_connections,
        console::connection,
        console::active_rooms,
        console::room_connections,
        console::room_grants,
        console::room_events,
    ),
    components(schemas(
        errors::ErrorEnvelope,
        crate::protocol::ErrorBody,
        crate::protocol::ErrorCode,
        emit::EmitRequest,
        emit::EmitReport,
        NotificationInput,
        super::Health,
        super::HealthStats,
        internal::MembersRequest,
        internal::MembersResponse,
        internal::RoomInfo,
        internal::DisconnectResponse,
        payloads::HistoryEntry,
        payloads::HistoryPage,
        client::Conversation,
        client::Conversations,
        client::ReadRequest,
        client::ReadResponse,
        payloads::NotificationPage,
        payloads::NotificationView,
        client::NotificationReadRequest,
        payloads::NotificationsRead,
        client::Me,
        console::ProtocolReference,
        console::ActionReference,
        console::EventReference,
        console::TypeReference,
        console::DevTokenRequest,
        console::DevToken,
        console::ConnectionView,
        console::ConnectionPage,
        console::RoomConnection,
        console::RoomConnectionPage,
        console::ActiveRoomView,
        console::ActiveRoomPage,
        console::UserPage,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "public", description = "No authentication"),
        (name = "internal", description = "Platform services, `x-api-key`"),
        (name = "client", description = "End users, `Authorization: Bearer <platform JWT>`"),
        (name = "development", description = "Only while the public development secrets are in use"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
