//! Human operators of the control plane and what their role lets them do.

string_enum!(Role, "operator role", "viewer, approver, admin", {
    // Roles are ordered: each includes the ones before it.
    // Read agents, decisions, approvals, kill switches, audit status.
    Viewer => "viewer",
    // Also approve or deny held calls.
    Approver => "approver",
    // Also suspend and resume agents, engage and lift kill switches.
    Admin => "admin",
});

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
