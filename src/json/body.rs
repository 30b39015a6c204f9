//! The bodies of a line: a record's fields, its identities and resources, and a
//! heartbeat's strings.

use std::net::IpAddr;
use std::str::FromStr;

use serde_json::{Map, Value as Json};

use super::JsonError;
use super::custom::custom_map;
use super::path::{Path, opt_array, opt_object, opt_string, opt_text, unknown_field, wrong_type};
use crate::encode::Heartbeat;
use crate::kinds::{
    CallerIdentityType, MessageKind, OperationCategory, OperationResult, OperationType,
};
use crate::record::{CallerIdentity, Record, TargetResource, Text};
use crate::validate::validate_service_tree_id;

pub(super) fn parse_kind(s: String, path: &Path<'_>) -> Result<MessageKind, JsonError> {
    if let Ok(kind) = s.parse::<MessageKind>() {
        return Ok(kind);
    }
    [
        MessageKind::DataPlane,
        MessageKind::ControlPlane,
        MessageKind::Heartbeat,
        MessageKind::Diagnostic,
    ]
    .into_iter()
    .find(|k| k.tag().eq_ignore_ascii_case(&s))
    .ok_or_else(|| JsonError::UnknownEnum {
        field: path.render(),
        value: Json::String(s).to_string(),
    })
}

/// An enum value from its name (case-insensitively) or its number.
fn parse_enum<T: FromStr>(
    v: &Json,
    path: &Path<'_>,
    from_repr: fn(u8) -> Option<T>,
) -> Result<T, JsonError> {
    let found = match v {
        Json::String(s) => s.parse::<T>().ok(),
        Json::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(from_repr),
        other => return Err(wrong_type(path, "a name or a number", other)),
    };
    found.ok_or_else(|| JsonError::UnknownEnum {
        field: path.render(),
        value: v.to_string(),
    })
}

/// `addr` or `addr%zone`.
fn parse_ip(s: &str, path: &Path<'_>) -> Result<(IpAddr, Option<String>), JsonError> {
    let invalid = || JsonError::InvalidIp {
        field: path.render(),
        value: s.to_owned(),
    };
    let (addr, zone) = match s.split_once('%') {
        Some((_, "")) => return Err(invalid()),
        Some((addr, zone)) => (addr, Some(zone.to_owned())),
        None => (s, None),
    };
    let ip = addr.parse::<IpAddr>().map_err(|_| invalid())?;
    Ok((ip, zone))
}

pub(super) fn parse_record(
    kind: MessageKind,
    map: Map<String, Json>,
) -> Result<(Record, Option<String>), JsonError> {
    let root = Path::root("record");
    let mut r = Record::new(kind);
    let mut service_tree_id = None;
    for (key, v) in map {
        let path = root.key(&key);
        let path = &path;
        match key.as_str() {
            "env_ikey" => service_tree_id = parse_service_tree_id(v, path)?,
            "CallerIpAddress" => parse_caller_ip(&mut r, v, path)?,
            "CallerIdentities" => parse_identities(&mut r, v, path)?,
            "OperationCategories" => parse_categories(&mut r, v, path)?,
            "CustomData" => {
                r.custom_data = match opt_object(v, path)? {
                    Some(m) => custom_map(m, path)?.into(),
                    None => Vec::new().into(),
                };
            }
            "TargetResources" => parse_targets(&mut r, v, path)?,
            "CallerAccessLevels" => parse_access_levels(&mut r, v, path)?,
            "OperationAccessLevel" => r.operation_access_level = opt_text(v, path)?,
            "OperationName" => r.operation_name = opt_text(v, path)?,
            "OperationResultDescription" => r.operation_result_description = opt_text(v, path)?,
            "CallerAgent" => r.caller_agent = opt_text(v, path)?,
            "OperationCategoryDescription" => r.operation_category_description = opt_text(v, path)?,
            "OperationType" => {
                if !v.is_null() {
                    r.operation_type = Some(parse_enum(&v, path, OperationType::from_repr)?);
                }
            }
            "OperationResult" => {
                if !v.is_null() {
                    r.operation_result = Some(parse_enum(&v, path, OperationResult::from_repr)?);
                }
            }
            _ => return Err(unknown_field(path)),
        }
    }
    Ok((r, service_tree_id))
}

/// `env_ikey`, in canonical form; an empty one is unset.
fn parse_service_tree_id(v: Json, path: &Path<'_>) -> Result<Option<String>, JsonError> {
    match opt_string(v, path)? {
        Some(id) if !id.is_empty() => {
            let canonical =
                validate_service_tree_id(&id).map_err(|error| JsonError::ServiceTreeId {
                    field: path.render(),
                    error,
                })?;
            Ok(Some(canonical))
        }
        _ => Ok(None),
    }
}

fn parse_caller_ip(r: &mut Record, v: Json, path: &Path<'_>) -> Result<(), JsonError> {
    if let Some(s) = opt_string(v, path)? {
        // An empty address is an unset one.
        if !s.is_empty() {
            let (ip, zone) = parse_ip(&s, path)?;
            r.caller_ip = Some(ip);
            r.caller_ip_zone = zone.map_or(Text::Borrowed(""), Text::Owned);
        }
    }
    Ok(())
}

/// `{"<type>": [{"Identity": ..., "Description": ...}, ...], ...}`
fn parse_identities(r: &mut Record, v: Json, path: &Path<'_>) -> Result<(), JsonError> {
    for (type_name, list) in opt_object(v, path)?.unwrap_or_default() {
        let tpath = path.key(&type_name);
        let kind = parse_enum(
            &Json::String(type_name.clone()),
            &tpath,
            CallerIdentityType::from_repr,
        )
        .or_else(|e| match type_name.parse::<u8>() {
            // Keys are always strings; allow the number in one too.
            Ok(n) => CallerIdentityType::from_repr(n).ok_or(e),
            Err(_) => Err(e),
        })?;
        let entries = opt_array(list, &tpath)?;
        if entries.is_empty() {
            return Err(JsonError::NoIdentities {
                field: tpath.render(),
                identity_type: kind.wire_name(),
            });
        }
        for (i, entry) in entries.into_iter().enumerate() {
            let epath = tpath.index(i);
            r.push_caller_identity(parse_identity(kind, entry, &epath)?);
        }
    }
    Ok(())
}

fn parse_categories(r: &mut Record, v: Json, path: &Path<'_>) -> Result<(), JsonError> {
    for (i, c) in opt_array(v, path)?.iter().enumerate() {
        let cpath = path.index(i);
        r.categories
            .insert(parse_enum(c, &cpath, OperationCategory::from_repr)?);
    }
    Ok(())
}

/// `{"<type>": [{"Name": ..., "Cluster": ..., ...}, ...], ...}`
fn parse_targets(r: &mut Record, v: Json, path: &Path<'_>) -> Result<(), JsonError> {
    for (resource_type, list) in opt_object(v, path)?.unwrap_or_default() {
        let tpath = path.key(&resource_type);
        let items = opt_array(list, &tpath)?;
        let resource_type = Text::Owned(resource_type.clone());
        for (i, entry) in items.into_iter().enumerate() {
            let epath = tpath.index(i);
            r.push_target_resource(parse_target(resource_type.clone(), entry, &epath)?);
        }
    }
    Ok(())
}

fn parse_access_levels(r: &mut Record, v: Json, path: &Path<'_>) -> Result<(), JsonError> {
    for (i, level) in opt_array(v, path)?.into_iter().enumerate() {
        let lpath = path.index(i);
        match level {
            Json::String(s) => r.push_caller_access_level(s),
            other => return Err(wrong_type(&lpath, "a string", &other)),
        }
    }
    Ok(())
}

fn parse_identity(
    kind: CallerIdentityType,
    entry: Json,
    path: &Path<'_>,
) -> Result<CallerIdentity, JsonError> {
    let Json::Object(m) = entry else {
        return Err(wrong_type(path, "an object", &entry));
    };
    let mut id = CallerIdentity {
        kind,
        identity: Text::Borrowed(""),
        description: Text::Borrowed(""),
    };
    for (key, v) in m {
        let fpath = path.key(&key);
        match key.as_str() {
            "Identity" => id.identity = opt_text(v, &fpath)?,
            "Description" => id.description = opt_text(v, &fpath)?,
            _ => return Err(unknown_field(&fpath)),
        }
    }
    Ok(id)
}

fn parse_target(
    resource_type: Text,
    entry: Json,
    path: &Path<'_>,
) -> Result<TargetResource, JsonError> {
    let Json::Object(m) = entry else {
        return Err(wrong_type(path, "an object", &entry));
    };
    let mut t = TargetResource::new(resource_type, "");
    for (key, v) in m {
        let fpath = path.key(&key);
        match key.as_str() {
            "Name" => t.name = opt_text(v, &fpath)?,
            "Cluster" => t.cluster = opt_text(v, &fpath)?,
            "DataCenter" => t.data_center = opt_text(v, &fpath)?,
            "Region" => t.region = opt_text(v, &fpath)?,
            _ => return Err(unknown_field(&fpath)),
        }
    }
    Ok(t)
}

pub(super) fn parse_heartbeat(map: Map<String, Json>) -> Result<Heartbeat, JsonError> {
    let root = Path::root("heartbeat");
    let mut hb = Heartbeat {
        service_id: Text::Borrowed(""),
        audit_version: Text::Borrowed(""),
        os_version: Text::Borrowed(""),
        language: Text::Borrowed(""),
        destination: Text::Borrowed(""),
    };
    for (key, v) in map {
        let path = root.key(&key);
        let slot = match key.as_str() {
            "AsmAuditServiceId" => &mut hb.service_id,
            "AuditVersion" => &mut hb.audit_version,
            "OsVersion" => &mut hb.os_version,
            "Language" => &mut hb.language,
            "Destination" => &mut hb.destination,
            _ => return Err(unknown_field(&path)),
        };
        *slot = opt_text(v, &path)?;
    }
    Ok(hb)
}
