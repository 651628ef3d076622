//! The conversation endpoint through the whole stack, on the paused clock:
//! one call per inbound message, offergate keeping the thread. Message
//! times move with the clock (`Thread::at`), as a platform's would.

use std::time::Duration;

use futures_util::future::join_all;
use offergate::call::route::Route;
use serde_json::{json, Value};

use crate::support::*;

const MESSAGES: &str = "/offergate/v1/encore/messages";
const UNSENT: &str = "/offergate/v1/encore/offers/unsent";
const OPT_OUT: &str = "/offergate/v1/encore/opt-out";
const OPT_IN: &str = "/offergate/v1/encore/opt-in";
const ELIGIBILITY: &str = "/offergate/v1/encore/eligibility";
const HOUR: u64 = 3_600_000;

/// A thread of one chat; its messages are dated by the paused clock.
struct Thread<'a> {
    s: &'a Stack,
    chat: String,
    /// Unix ms when the test started, and the clock then.
    base: i64,
    started: tokio::time::Instant,
    n: u32,
}

impl<'a> Thread<'a> {
    fn new(s: &'a Stack, chat: &str) -> Thread<'a> {
        let base = offergate::call::clock::wall_ms();
        Thread {
            s,
            chat: chat.into(),
            base,
            started: tokio::time::Instant::now(),
            n: 0,
        }
    }

    fn at(&self) -> i64 {
        self.base + self.started.elapsed().as_millis() as i64
    }

    fn body(&self, id: &str, text: &str) -> Value {
        json!({
            "clientId": "client-42",
            "chatId": self.chat,
            "messageId": id,
            "sentAt": self.at(),
            "text": text,
            "attributes": {"countryCode": "US", "language": "en", "platform": "ios"},
        })
    }

    /// A new inbound message, `after` the previous one.
    async fn says(&mut self, after: Duration, text: &str) -> Answer {
        tokio::time::advance(after).await;
        self.n += 1;
        let body = self.body(&format!("m{}", self.n), text);
        self.s.post(MESSAGES, &[], body).await
    }

    async fn unsent(&self, click_url: &str) -> Answer {
        let body = json!({"clientId": "client-42", "chatId": self.chat, "clickUrl": click_url});
        self.s.post(UNSENT, &[], body).await
    }

    async fn opt(&self, path: &str) -> Answer {
        let body = json!({"clientId": "client-42", "chatId": self.chat});
        self.s.post(path, &[], body).await
    }
}

fn decision(a: &Answer) -> (String, Value, Value, u64) {
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    (
        v["decision"].as_str().unwrap().to_string(),
        v["trigger"].clone(),
        v["reason"].clone(),
        v["offers_shown"].as_u64().unwrap(),
    )
}

fn offer_of(d: &(String, Value, Value, u64)) -> (&str, Option<&str>) {
    (d.0.as_str(), d.2.as_str())
}

#[tokio::test(start_paused = true)]
async fn one_call_per_message_first_message_mid_thread_and_the_idle_gap() {
    let s = Stack::new();
    let mut t = Thread::new(&s, "wa:15550001111:15551234567");
    let first = t.says(ms(0), "hi").await;
    let d = decision(&first);
    assert_eq!(
        (d.0.as_str(), &d.1, d.3),
        ("offer", &json!("first_message"), 1)
    );
    let v = first.json();
    let link = v["offer"]["clickUrl"].as_str().unwrap().to_string();
    let text = v["composed"]["text"].as_str().unwrap();
    assert!(
        text.contains(&link),
        "the composed text carries the link: {text}"
    );
    assert_eq!(v["composed"]["language"], "en");
    assert_eq!(s.calls(Route::EncoreOffers), 1);

    // Mid-thread: no Encore call.
    let d = decision(&t.says(ms(HOUR), "and another thing").await);
    assert_eq!(offer_of(&d), ("skip", Some("mid_thread")));
    assert_eq!(d.3, 1);
    // Just under the idle gap (12 h of silence since the last inbound): still mid-thread.
    let d = decision(&t.says(ms(12 * HOUR - 1), "still there?").await);
    assert_eq!(offer_of(&d), ("skip", Some("mid_thread")));
    // The gap itself: a re-engagement.
    let d = decision(&t.says(ms(12 * HOUR), "back").await);
    assert_eq!(
        (offer_of(&d), &d.1, d.3),
        (("offer", None), &json!("re_engagement"), 2)
    );
    assert_eq!(
        s.calls(Route::EncoreOffers),
        2,
        "one call per eligible message"
    );
    assert_eq!(
        s.sample(r#"offergate_conversation_decisions_total{decision="offer",reason="none"}"#),
        2.0
    );
    assert_eq!(
        s.sample(r#"offergate_conversation_decisions_total{decision="skip",reason="mid_thread"}"#),
        2.0
    );
    assert_eq!(
        s.sample(r#"offergate_requests_total{outcome="forwarded",route="encore_messages"}"#),
        2.0
    );

    // The platform's own record of the previous message wins.
    let mut body = t.body("m-late", "hello again");
    body["previousMessageAt"] = json!(t.at() - 13 * HOUR as i64);
    tokio::time::advance(ms(1)).await;
    let d = decision(&s.post(MESSAGES, &[], body).await);
    assert_eq!(d.1, json!("re_engagement"));
}

#[tokio::test(start_paused = true)]
async fn the_idle_gap_basis_inbound_or_any() {
    // A webhook that arrives six hours late: its offer is minted now, six
    // hours after the message. Seven hours on, the end user writes again.
    // On "inbound" that is 13 h of the user's silence: a re-engagement. On
    // "any" the offer was activity 7 h ago: mid-thread.
    for (basis, want) in [
        (
            offergate::config::IdleGapBasis::Inbound,
            json!("re_engagement"),
        ),
        (offergate::config::IdleGapBasis::Any, json!(null)),
    ] {
        let s = Stack::with(|c| c.encore.integrator.idle_gap_basis = basis);
        let mut t = Thread::new(&s, "late");
        let mut late = t.body("m-late", "hi");
        late["sentAt"] = json!(t.at() - 6 * HOUR as i64);
        assert_eq!(decision(&s.post(MESSAGES, &[], late).await).0, "offer");
        let d = decision(&t.says(ms(7 * HOUR), "back").await);
        assert_eq!(d.1, want, "{basis:?}");
        // Just under and just over the gap, on either basis.
        let d = decision(&t.says(ms(12 * HOUR - 1), "again").await);
        assert_eq!(d.1, json!(null), "{basis:?}: 1 ms short of the gap");
        let d = decision(&t.says(ms(12 * HOUR), "and again").await);
        assert_eq!(d.1, json!("re_engagement"), "{basis:?}: the gap itself");
    }
}

#[tokio::test(start_paused = true)]
async fn the_cap_unsent_and_one_count_for_every_route() {
    let s = Stack::new();
    let mut t = Thread::new(&s, "capped");
    let mut links = Vec::new();
    for n in 0..3 {
        let a = t.says(ms(if n == 0 { 0 } else { 13 * HOUR }), "hi").await;
        assert_eq!(decision(&a).0, "offer", "offer {n}");
        links.push(a.json()["offer"]["clickUrl"].as_str().unwrap().to_string());
    }
    let d = decision(&t.says(ms(13 * HOUR), "hi").await);
    assert_eq!((offer_of(&d), d.3), (("skip", Some("thread_cap")), 3));
    assert_eq!(
        s.calls(Route::EncoreOffers),
        3,
        "the capped message reached no partner"
    );

    // The offers route and the eligibility endpoint count the same offers.
    let capped = s.post(ENCORE_PATH, &[], encore_body("capped")).await;
    assert_eq!(
        capped.headers.get("x-offergate-skipped").unwrap(),
        "thread_cap"
    );
    let history = json!({"clientId": "client-42", "chatId": "capped", "messages": [
        {"direction": "outbound", "text": format!("Get it: {}", links[0]), "timestamp": t.at() - 1000},
        {"direction": "inbound", "text": "hi", "timestamp": t.at()},
    ]});
    // The history shows one offer (and only its first inbound message):
    // offergate's record adds the other two.
    let e = s.post(ELIGIBILITY, &[], history).await.json();
    assert_eq!(
        (e["offers_shown"].as_u64(), e["reason"].as_str()),
        (Some(3), Some("thread_cap"))
    );

    // An offer the platform could not deliver frees its slot.
    let freed = t.unsent(&links[1]).await;
    assert_eq!(freed.status, 200);
    assert_eq!(freed.json(), json!({"freed": true, "offers_shown": 2}));
    let again = t.unsent(&links[1]).await;
    assert_eq!(
        (again.status.as_u16(), again.code().as_str()),
        (404, "unknown_offer")
    );
    let bad = t.unsent("https://evil.example/x").await;
    assert_eq!(bad.status, 400);
    assert!(bad.message().starts_with("clickUrl: "), "{}", bad.message());
    let d = decision(&t.says(ms(13 * HOUR), "hi").await);
    assert_eq!((d.0.as_str(), d.3), ("offer", 3));
}

#[tokio::test(start_paused = true)]
async fn opt_out_by_endpoint_and_by_keyword() {
    let s = Stack::with(|c| c.encore.integrator.opt_out_keywords = vec!["stop".into()]);
    let mut t = Thread::new(&s, "opt");
    assert_eq!(t.opt(OPT_OUT).await.json(), json!({"opted_out": true}));
    let d = decision(&t.says(ms(0), "hi").await);
    assert_eq!(
        (offer_of(&d), &d.1),
        (("skip", Some("opted_out")), &json!("first_message"))
    );
    assert_eq!(t.opt(OPT_IN).await.json(), json!({"opted_out": false}));
    let d = decision(&t.says(ms(13 * HOUR), "hi").await);
    assert_eq!(d.0, "offer");
    // The keyword, whole message, any case.
    let d = decision(&t.says(ms(13 * HOUR), " Stop ").await);
    assert_eq!(offer_of(&d), ("skip", Some("opted_out")));
    let d = decision(
        &t.says(ms(13 * HOUR), "stop sending me deals? no, send more")
            .await,
    );
    assert_eq!(
        offer_of(&d),
        ("skip", Some("opted_out")),
        "the thread stays opted out"
    );
    assert_eq!(s.calls(Route::EncoreOffers), 1);
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_gets_the_same_answer_and_changes_nothing() {
    let s = Stack::new();
    let t = Thread::new(&s, "redelivered");
    let body = t.body("wamid.HBgL", "hi");
    // Five deliveries at once, then one later: one Encore call, one answer.
    s.plan(&[Step::Slow(ms(300))]);
    let answers = join_all((0..5).map(|_| s.post(MESSAGES, &[], body.clone()))).await;
    assert_eq!(s.calls(Route::EncoreOffers), 1);
    let first = &answers[0].body;
    for a in &answers {
        assert_eq!(&a.body, first);
    }
    assert_eq!(answers.iter().filter(|a| a.replayed()).count(), 4);
    tokio::time::advance(ms(HOUR)).await;
    let later = s.post(MESSAGES, &[], body.clone()).await;
    assert!(later.replayed());
    assert_eq!(&later.body, first);
    assert_eq!(later.json()["offers_shown"], 1, "no second count");
    assert_eq!(s.calls(Route::EncoreOffers), 1);
}

#[tokio::test(start_paused = true)]
async fn a_partner_failure_is_a_skip_with_the_fallbacks_reason() {
    let s = Stack::new();
    let mut t = Thread::new(&s, "failing");
    s.plan(&[Step::Status(503); 4]);
    let d = decision(&t.says(ms(0), "hi").await);
    assert_eq!(d.0, "skip");
    assert!(
        d.2.as_str()
            .is_some_and(|r| r.contains("503") || r.contains("upstream")),
        "{d:?}"
    );
    assert_eq!(d.3, 0, "no offer was shown");
    // No offer for this user: its own reason.
    s.plan(&[Step::NoOffer]);
    let d = decision(&t.says(ms(13 * HOUR), "hi").await);
    assert_eq!(offer_of(&d), ("skip", Some("no_offer")));
}

#[tokio::test(start_paused = true)]
async fn bad_messages_name_the_field() {
    let s = Stack::new();
    let t = Thread::new(&s, "bad");
    for (change, field) in [
        (json!({"messageId": null}), "messageId"),
        (json!({"sentAt": "yesterday"}), "sentAt"),
        (
            json!({"attributes": {"countryCode": "usa", "language": "en", "platform": "ios"}}),
            "attributes.countryCode",
        ),
        (json!({"text": 5}), "text"),
    ] {
        let mut body = t.body("x", "hi");
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let a = s.post(MESSAGES, &[], body).await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (400, "invalid_request".into())
        );
        assert!(
            a.message().starts_with(&format!("{field}: ")),
            "{}",
            a.message()
        );
    }
    assert_eq!(s.calls(Route::EncoreOffers), 0);
}

/// The rules, as plainly as they can be written, for the model test.
#[derive(Default, Clone)]
struct Model {
    last_inbound: Option<i64>,
    offers: Vec<i64>,
    opted_out: bool,
}

#[tokio::test(start_paused = true)]
async fn two_hundred_random_threads_decide_as_a_plain_model_of_the_rules() {
    let s = Stack::with(|c| {
        c.encore.integrator.opt_out_keywords = vec!["stop".into()];
        // Not a whole number of minutes: no offer is ever exactly at its edge.
        c.encore.integrator.thread_window = ms(72 * HOUR + 30_000);
    });
    let (gap, window, cap) = (12 * HOUR as i64, 72 * HOUR as i64 + 30_000, 3);
    let mut rng = fastrand::Rng::with_seed(23);
    let mut threads: Vec<(Thread, Model)> = (0..200)
        .map(|n| (Thread::new(&s, &format!("t{n}")), Model::default()))
        .collect();
    for step in 0..1_500 {
        // Time passes: minutes to a day.
        let after = ms(rng.u64(1..30 * 60) * 60_000);
        tokio::time::advance(after).await;
        let i = rng.usize(..threads.len());
        let (t, model) = &mut threads[i];
        let text = if rng.u8(..30) == 0 { "STOP" } else { "hello" };
        t.n += 1;
        let body = t.body(&format!("m{}", t.n), text);
        let at = body["sentAt"].as_i64().unwrap();
        let a = s.post(MESSAGES, &[], body).await;
        let got = decision(&a);
        // The model.
        model.offers.retain(|o| at - o < window);
        if text == "STOP" {
            model.opted_out = true;
        }
        let trigger = match model.last_inbound {
            None => Some("first_message"),
            Some(prev) if at - prev >= gap => Some("re_engagement"),
            Some(_) => None,
        };
        model.last_inbound = Some(at);
        let reason = if model.opted_out {
            Some("opted_out")
        } else if trigger.is_none() {
            Some("mid_thread")
        } else if model.offers.len() >= cap {
            Some("thread_cap")
        } else {
            None
        };
        if reason.is_none() {
            model.offers.push(at);
        }
        let want = (
            if reason.is_none() { "offer" } else { "skip" },
            trigger,
            reason,
            model.offers.len() as u64,
        );
        assert_eq!(
            (got.0.as_str(), got.1.as_str(), got.2.as_str(), got.3),
            want,
            "step {step}, thread {i}"
        );
    }
}
