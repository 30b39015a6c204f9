//! One target resource of a record.

use std::borrow::Cow;

use super::Text;

/// One resource the operation targeted.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetResource {
    /// The resource's type, e.g. `SubscriptionId`; resources are grouped by it on the wire.
    pub resource_type: Text,
    /// The resource's name. Must not be empty.
    pub name: Text,
    /// Its cluster, `""` when not known.
    pub cluster: Text,
    /// Its data center, `""` when not known.
    pub data_center: Text,
    /// Its region, `""` when not known.
    pub region: Text,
}

impl TargetResource {
    /// The resource's type.
    pub fn get_resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The resource's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Its cluster, `""` when not known.
    pub fn get_cluster(&self) -> &str {
        &self.cluster
    }

    /// Its data center, `""` when not known.
    pub fn get_data_center(&self) -> &str {
        &self.data_center
    }

    /// Its region, `""` when not known.
    pub fn get_region(&self) -> &str {
        &self.region
    }

    /// A resource from static text, usable in a `static` template.
    pub const fn from_static(resource_type: &'static str, name: &'static str) -> Self {
        TargetResource {
            resource_type: Cow::Borrowed(resource_type),
            name: Cow::Borrowed(name),
            cluster: Cow::Borrowed(""),
            data_center: Cow::Borrowed(""),
            region: Cow::Borrowed(""),
        }
    }

    /// A resource with only a type and a name.
    pub fn new(resource_type: impl Into<Text>, name: impl Into<Text>) -> Self {
        TargetResource {
            resource_type: resource_type.into(),
            name: name.into(),
            cluster: Text::Borrowed(""),
            data_center: Text::Borrowed(""),
            region: Text::Borrowed(""),
        }
    }

    /// Sets the cluster.
    pub fn cluster(mut self, cluster: impl Into<Text>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// Sets the data center.
    pub fn data_center(mut self, data_center: impl Into<Text>) -> Self {
        self.data_center = data_center.into();
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<Text>) -> Self {
        self.region = region.into();
        self
    }
}
