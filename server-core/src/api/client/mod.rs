//! The Client-Server API, one file per spec area (media's `/_matrix/media/*` paths included).

mod account;
mod devices;
mod directory;
mod discovery;
mod keys;
pub(crate) mod media;
mod membership;
mod profile;
mod room_events;
mod sync;
mod user_data;

pub(crate) use self::profile::local_profile;
pub(crate) use self::{
    directory::{PublicRoomsBody, local_public_rooms},
    media::{DownloadQuery, ThumbnailQuery, content_disposition, file_stream, thumbnail_request},
};

use axum::{
    Router,
    routing::{get, post, put},
};

use crate::service::Services;

/// Every client endpoint, by path.
pub(super) fn routes() -> Router<Services> {
    const C: &str = "/_matrix/client";
    let r = |path: &str| format!("{C}{path}");
    let m = |path: &str| format!("/_matrix/media{path}");
    Router::new()
        .route(&r("/versions"), get(discovery::get_supported_versions))
        .route(&r("/v3/capabilities"), get(discovery::get_capabilities))
        .route(&r("/v3/register"), post(account::register))
        .route(
            &r("/v3/register/available"),
            get(account::get_username_availability),
        )
        .route(
            &r("/v3/login"),
            get(account::get_login_types).post(account::login),
        )
        .route(&r("/v3/refresh"), post(account::refresh))
        .route(&r("/v3/logout"), post(account::logout))
        .route(&r("/v3/logout/all"), post(account::logout_all))
        .route(&r("/v3/account/whoami"), get(account::whoami))
        .route(&r("/v3/account/password"), post(account::change_password))
        .route(&r("/v3/account/deactivate"), post(account::deactivate))
        .route(&r("/v3/devices"), get(devices::get_devices))
        .route(&r("/v3/delete_devices"), post(devices::delete_devices))
        .route(
            &r("/v3/devices/{device_id}"),
            get(devices::get_device)
                .put(devices::update_device)
                .delete(devices::delete_device),
        )
        .route(&r("/v3/profile/{user_id}"), get(profile::get_profile))
        .route(
            &r("/v3/profile/{user_id}/{field}"),
            get(profile::get_profile_field).put(profile::set_profile_field),
        )
        .route(&r("/v3/createRoom"), post(membership::create_room))
        .route(
            &r("/v3/join/{room}"),
            post(membership::join_room_by_id_or_alias),
        )
        .route(
            &r("/v3/rooms/{room_id}/join"),
            post(membership::join_room_by_id),
        )
        .route(&r("/v3/knock/{room}"), post(membership::knock_room))
        .route(
            &r("/v3/rooms/{room_id}/invite"),
            post(membership::invite_user),
        )
        .route(
            &r("/v3/rooms/{room_id}/leave"),
            post(membership::leave_room),
        )
        .route(
            &r("/v3/rooms/{room_id}/forget"),
            post(membership::forget_room),
        )
        .route(&r("/v3/rooms/{room_id}/kick"), post(membership::kick_user))
        .route(&r("/v3/rooms/{room_id}/ban"), post(membership::ban_user))
        .route(
            &r("/v3/rooms/{room_id}/unban"),
            post(membership::unban_user),
        )
        .route(&r("/v3/joined_rooms"), get(membership::joined_rooms))
        .route(
            &r("/v3/rooms/{room_id}/members"),
            get(membership::get_member_events),
        )
        .route(
            &r("/v3/rooms/{room_id}/joined_members"),
            get(membership::joined_members),
        )
        .route(
            &r("/v3/rooms/{room_id}/send/{event_type}/{txn_id}"),
            put(room_events::send_message_event),
        )
        .route(
            &r("/v3/rooms/{room_id}/state"),
            get(room_events::get_state_events),
        )
        .route(
            &r("/v3/rooms/{room_id}/state/{event_type}"),
            get(room_events::get_state_event_empty_key)
                .put(room_events::send_state_event_empty_key),
        )
        // An empty state key as clients send it: with the trailing slash (matrix-sdk does).
        .route(
            &r("/v3/rooms/{room_id}/state/{event_type}/"),
            get(room_events::get_state_event_empty_key)
                .put(room_events::send_state_event_empty_key),
        )
        .route(
            &r("/v3/rooms/{room_id}/state/{event_type}/{state_key}"),
            get(room_events::get_state_event_for_key).put(room_events::send_state_event),
        )
        .route(
            &r("/v3/rooms/{room_id}/redact/{event_id}/{txn_id}"),
            put(room_events::redact_event),
        )
        .route(
            &r("/v3/rooms/{room_id}/event/{event_id}"),
            get(room_events::get_room_event),
        )
        .route(
            &r("/v3/rooms/{room_id}/messages"),
            get(room_events::get_message_events),
        )
        .route(
            &r("/v3/rooms/{room_id}/context/{event_id}"),
            get(room_events::get_context),
        )
        .route(
            &r("/v1/rooms/{room_id}/relations/{event_id}"),
            get(room_events::get_relating_events),
        )
        .route(
            &r("/v1/rooms/{room_id}/relations/{event_id}/{rel_type}"),
            get(room_events::get_relating_events),
        )
        .route(
            &r("/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}"),
            get(room_events::get_relating_events),
        )
        .route(
            &r("/v1/rooms/{room_id}/hierarchy"),
            get(directory::get_hierarchy),
        )
        .route(&r("/v3/sync"), get(sync::sync_events))
        .route(&r("/v3/user/{user_id}/filter"), post(sync::create_filter))
        .route(
            &r("/v3/user/{user_id}/filter/{filter_id}"),
            get(sync::get_filter),
        )
        .route(
            &r("/v3/rooms/{room_id}/typing/{user_id}"),
            put(user_data::create_typing_event),
        )
        .route(
            &r("/v3/presence/{user_id}/status"),
            get(user_data::get_presence).put(user_data::set_presence),
        )
        .route(
            &r("/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}"),
            post(user_data::create_receipt),
        )
        .route(
            &r("/v3/rooms/{room_id}/read_markers"),
            post(user_data::set_read_marker),
        )
        .route(
            &r("/v3/user/{user_id}/account_data/{data_type}"),
            get(user_data::get_global_account_data).put(user_data::set_global_account_data),
        )
        .route(
            &r("/v3/user/{user_id}/rooms/{room_id}/account_data/{data_type}"),
            get(user_data::get_room_account_data).put(user_data::set_room_account_data),
        )
        .route(
            &r("/v3/user/{user_id}/rooms/{room_id}/tags"),
            get(user_data::get_tags),
        )
        .route(
            &r("/v3/user/{user_id}/rooms/{room_id}/tags/{tag}"),
            put(user_data::create_tag).delete(user_data::delete_tag),
        )
        .route(&r("/v3/pushrules/"), get(user_data::get_pushrules_all))
        .route(&r("/v3/pushrules"), get(user_data::get_pushrules_all))
        .route(
            &r("/v3/pushrules/global/"),
            get(user_data::get_pushrules_global_scope),
        )
        .route(
            &r("/v3/pushrules/global/{kind}/{rule_id}"),
            get(user_data::get_pushrule)
                .put(user_data::set_pushrule)
                .delete(user_data::delete_pushrule),
        )
        .route(
            &r("/v3/pushrules/global/{kind}/{rule_id}/enabled"),
            get(user_data::get_pushrule_enabled).put(user_data::set_pushrule_enabled),
        )
        .route(
            &r("/v3/pushrules/global/{kind}/{rule_id}/actions"),
            get(user_data::get_pushrule_actions).put(user_data::set_pushrule_actions),
        )
        .route(&r("/v3/keys/upload"), post(keys::upload_keys))
        .route(&r("/v3/keys/query"), post(keys::query_keys))
        .route(&r("/v3/keys/claim"), post(keys::claim_keys))
        .route(&r("/v3/keys/changes"), get(keys::get_key_changes))
        .route(
            &r("/v3/keys/device_signing/upload"),
            post(keys::upload_cross_signing_keys),
        )
        .route(
            &r("/v3/keys/signatures/upload"),
            post(keys::upload_signatures),
        )
        .route(
            &r("/v3/sendToDevice/{event_type}/{txn_id}"),
            put(keys::send_to_device),
        )
        .route(
            &r("/v3/room_keys/version"),
            get(keys::get_latest_backup_version).post(keys::create_backup_version),
        )
        .route(
            &r("/v3/room_keys/version/{version}"),
            get(keys::get_backup_version)
                .put(keys::update_backup_version)
                .delete(keys::delete_backup_version),
        )
        .route(
            &r("/v3/room_keys/keys"),
            get(keys::get_room_keys)
                .put(keys::put_room_keys)
                .delete(keys::delete_room_keys),
        )
        .route(
            &r("/v3/room_keys/keys/{room_id}"),
            get(keys::get_room_keys)
                .put(keys::put_room_keys)
                .delete(keys::delete_room_keys),
        )
        .route(
            &r("/v3/room_keys/keys/{room_id}/{session_id}"),
            get(keys::get_room_keys)
                .put(keys::put_room_keys)
                .delete(keys::delete_room_keys),
        )
        .route(
            &r("/v3/user_directory/search"),
            post(user_data::search_users),
        )
        .route(
            &r("/v3/directory/room/{alias}"),
            get(directory::get_alias)
                .put(directory::create_alias)
                .delete(directory::delete_alias),
        )
        .route(
            &r("/v3/rooms/{room_id}/aliases"),
            get(directory::get_aliases),
        )
        .route(
            &r("/v3/directory/list/room/{room_id}"),
            get(directory::get_room_visibility).put(directory::set_room_visibility),
        )
        .route(
            &r("/v3/publicRooms"),
            get(directory::get_public_rooms).post(directory::get_public_rooms_filtered),
        )
        // Media (spec: modules/content_repo.md). Uploads stay under /_matrix/media; the
        // rest moved to /_matrix/client/v1/media in v1.11.
        .route(&r("/v1/media/config"), get(media::get_media_config))
        .route(&r("/v1/media/preview_url"), get(media::get_media_preview))
        .route(
            &r("/v1/media/download/{server_name}/{media_id}"),
            get(media::get_content),
        )
        .route(
            &r("/v1/media/download/{server_name}/{media_id}/{file_name}"),
            get(media::get_content_as_filename),
        )
        .route(
            &r("/v1/media/thumbnail/{server_name}/{media_id}"),
            get(media::get_content_thumbnail),
        )
        .route(&m("/v3/upload"), post(media::create_content))
        .route(&m("/v1/create"), post(media::create_mxc_uri))
        .route(
            &m("/v3/upload/{server_name}/{media_id}"),
            put(media::create_content_async),
        )
        .route(&m("/v3/config"), get(media::get_media_config))
        .route(&m("/v3/preview_url"), get(media::get_media_preview))
        .route(
            &m("/v3/download/{server_name}/{media_id}"),
            get(media::get_content_legacy),
        )
        .route(
            &m("/v3/download/{server_name}/{media_id}/{file_name}"),
            get(media::get_content_as_filename_legacy),
        )
        .route(
            &m("/v3/thumbnail/{server_name}/{media_id}"),
            get(media::get_content_thumbnail_legacy),
        )
}
