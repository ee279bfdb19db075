//! The step API itself: where a request yields to the user, how `resume`
//! continues it, and what the replies say about getNextAssertion follow-ups.

use super::*;
use crate::command::CMD_GET_NEXT_ASSERTION;
use crate::types::CredentialDescriptor;
use crate::{Approval, Command, Ctap2Status, Step, UserError};

const VERIFIED: Approval = Approval {
    user_present: true,
    user_verified: true,
};
const PRESENT: Approval = Approval {
    user_present: true,
    user_verified: false,
};

fn asks(step: Step) -> crate::ApprovalRequest {
    match step {
        Step::NeedsUser(q) => q,
        Step::Reply(r) => panic!("expected a question, got {r:?}"),
    }
}

fn replies(step: Step) -> crate::Reply {
    match step {
        Step::Reply(r) => r,
        Step::NeedsUser(q) => panic!("expected a reply, got a question {q:?}"),
    }
}

#[test]
fn make_credential_yields_then_resumes_to_the_reply() {
    let mut a = auth();
    let req = mc(true);
    let q = asks(a.process(&req.to_frame(), &ctx()));
    assert_eq!(q.command, Command::MakeCredential);
    assert_eq!(q.user_name.as_deref(), Some("alice"));
    assert_eq!(q.qr_age_secs, Some(3));
    assert!(a.is_waiting_for_user());
    assert!(
        a.env().store.credentials.is_empty(),
        "nothing stored before consent"
    );
    let r = replies(a.resume(Ok(VERIFIED)));
    assert!(r.is_ok());
    assert_eq!(r.command, Some(0x01));
    assert_eq!(r.follow_ups, 0);
    assert!(!a.is_waiting_for_user());
    rp().verify_registration(&CDH, &r.bytes, true).unwrap();
    assert_eq!(a.env().store.credentials.len(), 1);
}

#[test]
fn each_user_error_is_its_status() {
    for (answer, status) in [
        (Err(UserError::Declined), Ctap2Status::OperationDenied),
        (Err(UserError::Timeout), Ctap2Status::UserActionTimeout),
        (Err(UserError::Cancelled), Ctap2Status::KeepaliveCancel),
        (
            Ok(Approval {
                user_present: false,
                user_verified: false,
            }),
            Ctap2Status::OperationDenied,
        ),
    ] {
        let mut a = auth();
        let _ = asks(a.process(&mc(true).to_frame(), &ctx()));
        let r = replies(a.resume(answer));
        assert_eq!(r.status, status);
        assert_eq!(r.bytes, vec![status.byte()]);
        assert!(a.env().store.credentials.is_empty());
    }
}

/// Issue 16: an excludeList hit on a credProtect level-3 credential asks
/// for verification (`uv_required`); verified there, or verified at the
/// consent that follows a presence-only answer, it is CREDENTIAL_EXCLUDED
/// and nothing is stored — never a duplicate.
#[test]
fn cred_protect3_exclude_hit_collects_uv_never_duplicates() {
    let mut a = auth();
    let mut first = mc(true);
    first.extensions.cred_protect = Some(3);
    let cred = register(&mut a, &first);
    let mut again = mc(false);
    again.exclude_list = vec![CredentialDescriptor { id: cred.id }];

    // Verified at the excludeList prompt.
    let q = asks(a.process(&again.to_frame(), &ctx()));
    assert_eq!(q.command, Command::ExcludedCredential);
    assert!(q.uv_required);
    let r = replies(a.resume(Ok(VERIFIED)));
    assert_eq!(r.status, Ctap2Status::CredentialExcluded);
    assert_eq!(a.env().store.credentials.len(), 1);

    // Presence only there: consent comes next, and verified then, the
    // level-3 credential counts after all.
    let _ = asks(a.process(&again.to_frame(), &ctx()));
    let q = asks(a.resume(Ok(PRESENT)));
    assert_eq!(q.command, Command::MakeCredential);
    let r = replies(a.resume(Ok(VERIFIED)));
    assert_eq!(r.status, Ctap2Status::CredentialExcluded);
    assert_eq!(a.env().store.credentials.len(), 1, "no duplicate");

    // Never verified (CTAP 2.1 §6.1.2 step 12.1.1): the hit stays
    // invisible and a new credential may be made — when the request does
    // not ask for UV itself.
    again.options.uv = None;
    let _ = asks(a.process(&again.to_frame(), &ctx()));
    let _ = asks(a.resume(Ok(PRESENT)));
    assert!(replies(a.resume(Ok(PRESENT))).is_ok());
    assert_eq!(a.env().store.credentials.len(), 2);
}

#[test]
fn presence_only_touch_then_pin_not_set() {
    let mut a = auth();
    let mut req = mc(true);
    req.pin_uv_auth_param = Some(Vec::new());
    let q = asks(a.process(&req.to_frame(), &ctx()));
    assert_eq!(q.command, Command::PresenceOnly);
    assert_eq!(
        replies(a.resume(Ok(PRESENT))).status,
        Ctap2Status::PinNotSet
    );
}

#[test]
fn a_new_request_or_end_session_abandons_the_parked_one() {
    let mut a = auth();
    let _ = asks(a.process(&mc(true).to_frame(), &ctx()));
    let r = replies(a.process(&[0x04], &ctx()));
    assert!(r.is_ok(), "getInfo answered");
    assert!(!a.is_waiting_for_user());
    assert_eq!(
        replies(a.resume(Ok(VERIFIED))).status,
        Ctap2Status::NotAllowed,
        "nothing to resume"
    );
    let _ = asks(a.process(&mc(true).to_frame(), &ctx()));
    a.end_session();
    assert!(!a.is_waiting_for_user());
    assert!(a.env().store.credentials.is_empty());
}

#[test]
fn replies_count_down_the_get_next_assertion_follow_ups() {
    let mut a = auth();
    for (n, name) in [(1u8, "alice"), (2, "bob"), (3, "carol")] {
        let mut req = mc(true);
        req.user = user(&[n], name);
        register(&mut a, &req);
    }
    let r = a.reply_scripted(&ga(&[]).to_frame(), &ctx());
    assert!(r.is_ok());
    assert_eq!(r.follow_ups, 2, "numberOfCredentials 3");
    let r = a.reply_scripted(&[CMD_GET_NEXT_ASSERTION], &ctx());
    assert_eq!((r.command, r.follow_ups), (Some(CMD_GET_NEXT_ASSERTION), 1));
    // Past the 30 s window the list is gone.
    a.env_mut().clock.advance_ms(30_001);
    let r = a.reply_scripted(&[CMD_GET_NEXT_ASSERTION], &ctx());
    assert_eq!((r.status, r.follow_ups), (Ctap2Status::NotAllowed, 0));
    // Any other command ends the list too.
    let _ = a.reply_scripted(&ga(&[]).to_frame(), &ctx());
    let r = a.reply_scripted(&[0x04], &ctx());
    assert_eq!(r.follow_ups, 0);
    // An allowList lookup announces none.
    let r = a.reply_scripted(&ga(&[vec![0xEE; 32]]).to_frame(), &ctx());
    assert_eq!((r.status, r.follow_ups), (Ctap2Status::NoCredentials, 0));
}
