//! The simulated Besitos upcoming-goals endpoint: bearer token checked, the
//! filters of the docs applied (`subscribers`, `offers`, `hours_from`,
//! `hours_to` defaulting to 48), `message_template` substituted, and the answer
//! paged like the docs' sample (a Laravel simple paginator, `per_page` a string).

use crate::call::problem::Problem;
use serde::Serialize;
use serde_json::Value;

pub const PER_PAGE: usize = 5;
/// The docs' default message.
pub const DEFAULT_TEMPLATE: &str =
    "Reminder: You have {hours} hours left to reach {level} of {game} and earn {reward}. Don’t miss the deadline.";

pub struct Goal {
    subscriber_id: &'static str,
    offer_id: &'static str,
    game: &'static str,
    level: String,
    level_description: String,
    hours: u64,
    reward: String,
}

const SUBSCRIBERS: [&str; 4] = [
    "LaQ1VYb5ANTAny25Ig",
    "21sdf1sef54wef64",
    "Pz8kQm2VxR7tLw3N",
    "Hq4nB6yT1cJ9sE0a",
];
const OFFERS: [&str; 3] = ["rYZvzXlCqfSN", "rYZv23fgqfSN", "kT7pLm2QxW9z"];
const GAMES: [&str; 4] = [
    "Alice‘s Dream : Merge Island",
    "Bingo Blitz",
    "Solitaire Grand Harvest",
    "Merge Dragons!",
];
const HOURS: [u64; 24] = [
    3, 7, 12, 18, 26, 33, 41, 47, 55, 72, 96, 120, 150, 200, 291, 5, 9, 15, 22, 30, 38, 44, 60, 100,
];

/// The fixed dataset every simulated partner account holds.
pub fn dataset() -> Vec<Goal> {
    HOURS
        .iter()
        .enumerate()
        .map(|(i, &hours)| Goal {
            subscriber_id: SUBSCRIBERS[i % SUBSCRIBERS.len()],
            offer_id: OFFERS[i % OFFERS.len()],
            game: GAMES[(i / 2) % GAMES.len()],
            level: format!("level {}", 1079 + i),
            level_description: format!("Reach Level {}", 15 + 5 * i),
            hours,
            reward: format!("{} coins", 40 + 10 * i),
        })
        .collect()
}

#[derive(Serialize)]
struct Item<'a> {
    subscriber_id: &'a str,
    game: &'a str,
    level: &'a str,
    level_description: &'a str,
    hours: u64,
    currency: &'a str,
    reward: &'a str,
    message: String,
}

#[derive(Serialize)]
struct Page<'a> {
    current_page: usize,
    data: Vec<Item<'a>>,
    first_page_url: String,
    from: Option<usize>,
    next_page_url: Option<String>,
    path: String,
    per_page: String,
    prev_page_url: Option<String>,
    to: Option<usize>,
}

/// The filters of a request; `Err` is the partner's 400 message.
pub struct Filters {
    subscribers: Vec<String>,
    offers: Vec<String>,
    hours_from: u64,
    hours_to: u64,
    template: Option<String>,
}

pub fn parse_filters(body: &[u8]) -> Result<Filters, Problem> {
    let mut f = Filters {
        subscribers: vec![],
        offers: vec![],
        hours_from: 0,
        hours_to: 48,
        template: None,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(f);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|_| "The given data was invalid.".to_string())?;
    let list = |name: &str| -> Result<Vec<String>, Problem> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or(Problem(format!(
                        "The {name} field must be an array of strings."
                    )))
                })
                .collect(),
            _ => Err(format!("The {name} field must be an array.").into()),
        }
    };
    f.subscribers = list("subscribers")?;
    f.offers = list("offers")?;
    let int = |name: &str| {
        v.get(name).filter(|x| !x.is_null()).map(|x| {
            x.as_u64()
                .ok_or(format!("The {name} field must be an integer."))
        })
    };
    if let Some(h) = int("hours_from") {
        f.hours_from = h?;
    }
    if let Some(h) = int("hours_to") {
        f.hours_to = h?;
    }
    f.template = v
        .get("message_template")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(f)
}

fn render(template: &str, g: &Goal) -> String {
    template
        .replace("{hours}", &g.hours.to_string())
        .replace("{level}", &g.level)
        .replace("{game}", g.game)
        .replace("{reward}", &g.reward)
}

/// The 200 body for page `page` (1-based) of the goals matching `f`.
/// `origin` is the simulator's own URL, which its page URLs point at.
pub fn answer(goals: &[Goal], f: &Filters, page: usize, origin: &str, partner_id: &str) -> Vec<u8> {
    let matching: Vec<&Goal> = goals
        .iter()
        .filter(|g| f.subscribers.is_empty() || f.subscribers.iter().any(|s| s == g.subscriber_id))
        .filter(|g| f.offers.is_empty() || f.offers.iter().any(|o| o == g.offer_id))
        .filter(|g| g.hours >= f.hours_from && g.hours <= f.hours_to)
        .collect();
    let start = (page - 1).saturating_mul(PER_PAGE);
    let template = f.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    let data: Vec<Item> = matching
        .iter()
        .skip(start)
        .take(PER_PAGE)
        .map(|g| Item {
            subscriber_id: g.subscriber_id,
            game: g.game,
            level: &g.level,
            level_description: &g.level_description,
            hours: g.hours,
            currency: "coins",
            reward: &g.reward,
            message: render(template, g),
        })
        .collect();
    // Its own spelling of the path, not offergate's: a routing bug cannot be mirrored.
    let path = format!("{origin}/data/messages/{partner_id}/upcoming-goals");
    let url = |p: usize| format!("{path}?page={p}");
    let n = data.len();
    let body = Page {
        current_page: page,
        first_page_url: url(1),
        from: (n > 0).then_some(start + 1),
        next_page_url: (start + n < matching.len()).then(|| url(page + 1)),
        prev_page_url: (page > 1).then(|| url(page - 1)),
        to: (n > 0).then_some(start + n),
        per_page: PER_PAGE.to_string(),
        path,
        data,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_pages() {
        let goals = dataset();
        let f = parse_filters(b"").unwrap();
        let v: Value = serde_json::from_slice(&answer(&goals, &f, 1, "http://sim", "p")).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), PER_PAGE);
        assert_eq!(
            v["next_page_url"],
            "http://sim/data/messages/p/upcoming-goals?page=2"
        );
        assert_eq!(v["prev_page_url"], Value::Null);
        assert!(v["data"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Reminder: You have 3 hours"));
        let f = parse_filters(br#"{"subscribers":["LaQ1VYb5ANTAny25Ig"],"hours_from":0,"hours_to":500,"message_template":"{game}/{level}/{hours}/{reward}"}"#).unwrap();
        let v: Value = serde_json::from_slice(&answer(&goals, &f, 1, "http://sim", "p")).unwrap();
        for item in v["data"].as_array().unwrap() {
            assert_eq!(item["subscriber_id"], "LaQ1VYb5ANTAny25Ig");
            let expect = format!(
                "{}/{}/{}/{}",
                item["game"].as_str().unwrap(),
                item["level"].as_str().unwrap(),
                item["hours"],
                item["reward"].as_str().unwrap()
            );
            assert_eq!(item["message"], expect);
        }
        let v: Value = serde_json::from_slice(&answer(&goals, &f, 99, "http://sim", "p")).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 0);
        assert_eq!(v["from"], Value::Null);
    }
}
