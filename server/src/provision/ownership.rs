//! `GET /api/v1/provisioning/ownership`: the owner the device is provisioned for.

use super::{owner_uuid, Provisioner};
use crate::enrollment::EnrollmentGroup;
use crate::proto::body::OwnershipResponse;

impl Provisioner {
    /// The group's owner UUID ([`owner_uuid`]) as `devowneruuid`.
    pub fn ownership(&self, group: &EnrollmentGroup) -> OwnershipResponse {
        OwnershipResponse {
            devowneruuid: owner_uuid(&group.owner).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::provision::test_support::{group, provisioner};
    use uuid::Uuid;

    #[test]
    fn ownership_sends_the_owner_uuid() {
        let p = provisioner(Vec::new());
        let id = Uuid::new_v4();
        assert_eq!(
            p.ownership(&group(&id.to_string())).devowneruuid,
            id.to_string()
        );
        assert_eq!(
            p.ownership(&group("acme")).devowneruuid,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"acme").to_string()
        );
    }
}
