//! The audit record model.
//!
//! A [`Record`] is built to be cheap: every text field is a [`Text`] (a
//! `Cow<'static, str>`), so literals cost nothing and owned strings are moved rather than
//! copied; categories are a bitset; identities, target resources and access levels are
//! flat collections (`Cow<'static, [T]>`: a static slice, or one vector per collection)
//! kept in the order the encoder writes them, so encoding needs no sorting and no
//! scratch space. A record built only from static data (static slices for its
//! collections) allocates nothing, and neither does cloning it; one built entry by entry
//! costs one allocation per non-empty collection, plus growth.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::kinds::{
    CallerIdentityType, MessageKind, OperationCategory, OperationResult, OperationType,
};

mod caller_identity;
mod categories;
mod target_resource;
mod value;

pub use caller_identity::CallerIdentity;
pub use categories::OperationCategories;
pub use target_resource::TargetResource;
pub use value::Value;

/// Text in a record: a `&'static str` without allocating, or an owned `String` without
/// copying.
pub type Text = Cow<'static, str>;

/// One audit record: who did what to which resources, from where, with what result.
///
/// Build it with the chained setters; collections keep the order the wire wants
/// (identities grouped by type in enum order, resources grouped by type in first-seen
/// order, access levels sorted bytewise without duplicates), so that encoding is a
/// straight walk.
///
/// ```
/// use geneva_audit::{CallerIdentityType, OperationCategory, OperationResult, OperationType, Record};
///
/// let record = Record::data_plane()
///     .caller_ip("203.0.113.42".parse().unwrap())
///     .add_caller_identity(CallerIdentityType::Upn, "alice@contoso.com", "signed-in user")
///     .add_operation_category(OperationCategory::ResourceManagement)
///     .add_target_resource("SubscriptionId", "4bb12743-2418-427f-92ae-96a11a4044fe")
///     .add_caller_access_level("Contributor")
///     .operation_access_level("Contributor")
///     .operation_name("ListStorageAccounts")
///     .caller_agent("azure-cli/2.61.0")
///     .operation_type(OperationType::Read)
///     .operation_result(OperationResult::Success);
/// assert!(record.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub(crate) kind: MessageKind,
    pub(crate) caller_ip: Option<IpAddr>,
    pub(crate) caller_ip_zone: Text,
    pub(crate) caller_identities: Cow<'static, [CallerIdentity]>,
    pub(crate) categories: OperationCategories,
    pub(crate) custom_data: Cow<'static, [(Text, Value)]>,
    pub(crate) target_resources: Cow<'static, [TargetResource]>,
    pub(crate) caller_access_levels: Cow<'static, [Text]>,
    pub(crate) operation_access_level: Text,
    pub(crate) operation_name: Text,
    pub(crate) operation_result_description: Text,
    pub(crate) caller_agent: Text,
    pub(crate) operation_category_description: Text,
    pub(crate) operation_type: Option<OperationType>,
    pub(crate) operation_result: Option<OperationResult>,
    pub(crate) event_time: Option<i64>,
}

const EMPTY: Text = Text::Borrowed("");

impl Record {
    /// An empty record of the given kind. Only [`MessageKind::DataPlane`] and
    /// [`MessageKind::ControlPlane`] records can be sent; validation refuses the others.
    pub const fn new(kind: MessageKind) -> Self {
        Record {
            kind,
            caller_ip: None,
            caller_ip_zone: EMPTY,
            caller_identities: Cow::Borrowed(&[]),
            categories: OperationCategories::new(),
            custom_data: Cow::Borrowed(&[]),
            target_resources: Cow::Borrowed(&[]),
            caller_access_levels: Cow::Borrowed(&[]),
            operation_access_level: EMPTY,
            operation_name: EMPTY,
            operation_result_description: EMPTY,
            caller_agent: EMPTY,
            operation_category_description: EMPTY,
            operation_type: None,
            operation_result: None,
            event_time: None,
        }
    }

    /// An empty data-plane record.
    pub const fn data_plane() -> Self {
        Record::new(MessageKind::DataPlane)
    }

    /// An empty control-plane record.
    pub const fn control_plane() -> Self {
        Record::new(MessageKind::ControlPlane)
    }

    /// Sets the caller's IP address.
    pub fn caller_ip(mut self, ip: IpAddr) -> Self {
        self.caller_ip = Some(ip);
        self
    }

    /// Sets the IPv6 zone of the caller's address (`fe80::1%eth0` has zone `eth0`);
    /// it is written after a `%`, as the reference client writes it.
    pub fn caller_ip_zone(mut self, zone: impl Into<Text>) -> Self {
        self.caller_ip_zone = zone.into();
        self
    }

    /// Adds a caller identity. Identities of one type keep the order they were added in.
    pub fn add_caller_identity(
        mut self,
        kind: CallerIdentityType,
        identity: impl Into<Text>,
        description: impl Into<Text>,
    ) -> Self {
        self.push_caller_identity(CallerIdentity {
            kind,
            identity: identity.into(),
            description: description.into(),
        });
        self
    }

    /// Adds a caller identity in place; see [`Record::add_caller_identity`].
    pub fn push_caller_identity(&mut self, identity: CallerIdentity) {
        // Keep the vector grouped by type in enum order: insert after the last entry whose
        // type is not greater.
        let at = self
            .caller_identities
            .partition_point(|e| e.kind <= identity.kind);
        self.caller_identities.to_mut().insert(at, identity);
    }

    /// Adds an operation category (adding one twice is harmless).
    pub fn add_operation_category(mut self, category: OperationCategory) -> Self {
        self.categories.insert(category);
        self
    }

    /// Replaces the set of operation categories.
    pub fn operation_categories(mut self, categories: OperationCategories) -> Self {
        self.categories = categories;
        self
    }

    /// Adds a target resource with only a type and a name.
    pub fn add_target_resource(
        self,
        resource_type: impl Into<Text>,
        name: impl Into<Text>,
    ) -> Self {
        self.add_target(TargetResource::new(resource_type, name))
    }

    /// Adds a target resource with all its fields.
    pub fn add_target(mut self, resource: TargetResource) -> Self {
        self.push_target_resource(resource);
        self
    }

    /// Adds a target resource in place; see [`Record::add_target`].
    pub fn push_target_resource(&mut self, resource: TargetResource) {
        // Keep resources of one type together, types in first-seen order: insert after
        // the last resource of the same type, or at the end for a new type.
        let at = self
            .target_resources
            .iter()
            .rposition(|r| r.resource_type == resource.resource_type)
            .map_or(self.target_resources.len(), |i| i + 1);
        self.target_resources.to_mut().insert(at, resource);
    }

    /// Adds a caller access level; the set stays sorted bytewise and free of exact
    /// duplicates.
    pub fn add_caller_access_level(mut self, level: impl Into<Text>) -> Self {
        self.push_caller_access_level(level);
        self
    }

    /// Adds a caller access level in place; see [`Record::add_caller_access_level`].
    pub fn push_caller_access_level(&mut self, level: impl Into<Text>) {
        let level = level.into();
        if let Err(at) = self
            .caller_access_levels
            .binary_search_by(|l| l.as_bytes().cmp(level.as_bytes()))
        {
            self.caller_access_levels.to_mut().insert(at, level);
        }
    }

    /// Sets the access level the operation required.
    pub fn operation_access_level(mut self, level: impl Into<Text>) -> Self {
        self.operation_access_level = level.into();
        self
    }

    /// Sets the operation's name.
    pub fn operation_name(mut self, name: impl Into<Text>) -> Self {
        self.operation_name = name.into();
        self
    }

    /// Sets the result description (required when the result is a failure).
    pub fn operation_result_description(mut self, description: impl Into<Text>) -> Self {
        self.operation_result_description = description.into();
        self
    }

    /// Sets the caller agent (e.g. the user agent of the request).
    pub fn caller_agent(mut self, agent: impl Into<Text>) -> Self {
        self.caller_agent = agent.into();
        self
    }

    /// Sets the category description (required with [`OperationCategory::Other`]).
    pub fn operation_category_description(mut self, description: impl Into<Text>) -> Self {
        self.operation_category_description = description.into();
        self
    }

    /// Sets the operation type.
    pub fn operation_type(mut self, operation_type: OperationType) -> Self {
        self.operation_type = Some(operation_type);
        self
    }

    /// Sets the operation result.
    pub fn operation_result(mut self, result: OperationResult) -> Self {
        self.operation_result = Some(result);
        self
    }

    /// Sets a custom-data entry, replacing an earlier value under the same key. Entries
    /// are written in the order their keys were first set.
    pub fn custom(mut self, key: impl Into<Text>, value: impl Into<Value>) -> Self {
        self.set_custom(key, value);
        self
    }

    /// Sets a custom-data entry in place; see [`Record::custom`].
    pub fn set_custom(&mut self, key: impl Into<Text>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        let data = self.custom_data.to_mut();
        match data.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => data.push((key, value)),
        }
    }

    /// Removes every caller identity, target resource, access level and custom-data
    /// entry, keeping the vectors' capacity for reuse.
    pub fn clear_collections(&mut self) {
        clear(&mut self.caller_identities);
        clear(&mut self.target_resources);
        clear(&mut self.caller_access_levels);
        clear(&mut self.custom_data);
        self.categories = OperationCategories::new();
    }

    /// Replaces the caller identities. A `&'static` slice costs no allocation (and
    /// neither does cloning the record) when it is already grouped by type in enum order;
    /// otherwise it is copied once and put in that order.
    pub fn caller_identities_from(
        mut self,
        ids: impl Into<Cow<'static, [CallerIdentity]>>,
    ) -> Self {
        self.caller_identities = ids.into();
        if !self.caller_identities.is_sorted_by_key(|i| i.kind) {
            self.caller_identities.to_mut().sort_by_key(|i| i.kind);
        }
        self
    }

    /// Replaces the target resources. A `&'static` slice costs no allocation when
    /// resources of one type are already together; otherwise it is copied once and
    /// grouped by type in first-seen order.
    pub fn target_resources_from(
        mut self,
        resources: impl Into<Cow<'static, [TargetResource]>>,
    ) -> Self {
        let resources = resources.into();
        let grouped = resources.iter().enumerate().all(|(i, r)| {
            i == 0
                || resources[i - 1].resource_type == r.resource_type
                || !resources[..i]
                    .iter()
                    .any(|p| p.resource_type == r.resource_type)
        });
        if grouped {
            self.target_resources = resources;
        } else {
            self.target_resources = Cow::Borrowed(&[]);
            for r in resources.iter() {
                self.push_target_resource(r.clone());
            }
        }
        self
    }

    /// Replaces the caller access levels. A `&'static` slice costs no allocation when it
    /// is already sorted bytewise without duplicates; otherwise it is copied once, sorted
    /// and deduplicated.
    pub fn caller_access_levels_from(mut self, levels: impl Into<Cow<'static, [Text]>>) -> Self {
        self.caller_access_levels = levels.into();
        let sorted = self
            .caller_access_levels
            .windows(2)
            .all(|w| w[0].as_bytes() < w[1].as_bytes());
        if !sorted {
            let levels = self.caller_access_levels.to_mut();
            levels.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            levels.dedup();
        }
        self
    }

    /// Replaces the custom data; a `&'static` slice costs no allocation. Keys must be
    /// unique (validation checks).
    pub fn custom_data_from(mut self, data: impl Into<Cow<'static, [(Text, Value)]>>) -> Self {
        self.custom_data = data.into();
        self
    }

    /// Sets the time the audited event happened, in Unix seconds. The client writes it
    /// as the frame's time; a record without one is stamped with the time it is sent.
    pub fn event_time(mut self, unix_seconds: i64) -> Self {
        self.event_time = Some(unix_seconds);
        self
    }

    /// The record's kind.
    pub fn get_kind(&self) -> MessageKind {
        self.kind
    }

    /// The time the audited event happened in Unix seconds, if one was set.
    pub fn get_event_time(&self) -> Option<i64> {
        self.event_time
    }

    /// The caller's IP address, if set.
    pub fn get_caller_ip(&self) -> Option<IpAddr> {
        self.caller_ip
    }

    /// The IPv6 zone of the caller's address, `""` when there is none.
    pub fn get_caller_ip_zone(&self) -> &str {
        &self.caller_ip_zone
    }

    /// The caller identities, grouped by type in enum order.
    pub fn get_caller_identities(&self) -> &[CallerIdentity] {
        &self.caller_identities
    }

    /// The operation categories.
    pub fn get_operation_categories(&self) -> OperationCategories {
        self.categories
    }

    /// The target resources, grouped by type in first-seen order.
    pub fn get_target_resources(&self) -> &[TargetResource] {
        &self.target_resources
    }

    /// The caller access levels, sorted bytewise without duplicates.
    pub fn get_caller_access_levels(&self) -> &[Text] {
        &self.caller_access_levels
    }

    /// The custom-data entries in the order they are written.
    pub fn get_custom_data(&self) -> &[(Text, Value)] {
        &self.custom_data
    }

    /// The access level the operation required.
    pub fn get_operation_access_level(&self) -> &str {
        &self.operation_access_level
    }

    /// The operation's name.
    pub fn get_operation_name(&self) -> &str {
        &self.operation_name
    }

    /// The result description, `""` when not set.
    pub fn get_operation_result_description(&self) -> &str {
        &self.operation_result_description
    }

    /// The caller agent.
    pub fn get_caller_agent(&self) -> &str {
        &self.caller_agent
    }

    /// The category description, `""` when not set.
    pub fn get_operation_category_description(&self) -> &str {
        &self.operation_category_description
    }

    /// The operation type, if set.
    pub fn get_operation_type(&self) -> Option<OperationType> {
        self.operation_type
    }

    /// The operation result, if set.
    pub fn get_operation_result(&self) -> Option<OperationResult> {
        self.operation_result
    }
}

/// Empties a collection, keeping an owned vector's capacity.
fn clear<T: Clone>(c: &mut Cow<'static, [T]>) {
    match c {
        Cow::Owned(v) => v.clear(),
        Cow::Borrowed(_) => *c = Cow::Borrowed(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_keep_wire_order() {
        let r = Record::data_plane()
            .add_caller_identity(CallerIdentityType::ObjectId, "o1", "d")
            .add_caller_identity(CallerIdentityType::Upn, "u1", "d")
            .add_caller_identity(CallerIdentityType::ObjectId, "o2", "d")
            .add_caller_identity(CallerIdentityType::Upn, "u2", "d")
            .add_target_resource("B", "b1")
            .add_target_resource("A", "a1")
            .add_target_resource("B", "b2")
            .add_caller_access_level("Reader")
            .add_caller_access_level("Contributor")
            .add_caller_access_level("Reader")
            .add_caller_access_level("owner")
            .add_caller_access_level("Owner");
        let ids: Vec<&str> = r
            .get_caller_identities()
            .iter()
            .map(|i| &*i.identity)
            .collect();
        assert_eq!(ids, ["u1", "u2", "o1", "o2"]);
        let names: Vec<&str> = r.get_target_resources().iter().map(|t| &*t.name).collect();
        assert_eq!(names, ["b1", "b2", "a1"]);
        let levels: Vec<&str> = r.get_caller_access_levels().iter().map(|l| &**l).collect();
        assert_eq!(levels, ["Contributor", "Owner", "Reader", "owner"]);
    }

    #[test]
    fn categories_are_a_sorted_set() {
        let set: OperationCategories = [
            OperationCategory::Euii,
            OperationCategory::Other,
            OperationCategory::Euii,
            OperationCategory::KeyManagement,
        ]
        .into_iter()
        .collect();
        let v: Vec<_> = set.iter().collect();
        assert_eq!(
            v,
            [
                OperationCategory::Other,
                OperationCategory::KeyManagement,
                OperationCategory::Euii
            ]
        );
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn custom_replaces_same_key() {
        let r = Record::data_plane()
            .custom("a", 1i64)
            .custom("b", true)
            .custom("a", "x");
        assert_eq!(
            r.get_custom_data(),
            &[
                (Text::from("a"), Value::from("x")),
                (Text::from("b"), Value::Bool(true))
            ]
        );
    }
}
