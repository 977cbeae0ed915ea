//! Human operators of the control plane, what their role lets them do, and
//! the identity an authenticated operator carries into approvals and audit.

string_enum!(Role, "operator role", "viewer, approver, admin", {
    // Roles are ordered: each includes the ones before it.
    // Read agents, decisions, approvals, kill switches, audit status.
    Viewer => "viewer",
    // Also approve or deny held calls.
    Approver => "approver",
    // Also suspend and resume agents, engage and lift kill switches.
    Admin => "admin",
});

/// An operator whose token was checked against the stored token digest:
/// the only kind of identity that may decide approvals or change anything.
/// Names are unique among registered operators, so the name is the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

impl Operator {
    /// How approvals and audit records name them.
    pub fn subject(&self) -> String {
        format!("operator:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Approver && Role::Approver > Role::Viewer);
        assert_eq!("approver".parse::<Role>().unwrap(), Role::Approver);
        assert!("root".parse::<Role>().is_err());
    }
}
