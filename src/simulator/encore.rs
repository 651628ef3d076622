//! The simulated Encore offers endpoint, as its docs describe it: `X-API-Key`
//! checked, a fresh `link.encorekit.com` short link minted on every call,
//! `offer: null` where no campaign targets the country.

use crate::call::problem::Problem;
use serde::Serialize;
use serde_json::Value;

/// Countries with an active campaign; everywhere else answers `offer: null`.
pub const OFFER_COUNTRIES: &[&str] = &[
    "AU", "BR", "CA", "DE", "ES", "FR", "GB", "IE", "IT", "MX", "NL", "US",
];

#[derive(Serialize)]
struct Offer {
    #[serde(rename = "clickUrl")]
    click_url: String,
    title: &'static str,
    description: Option<&'static str>,
    #[serde(rename = "imageUrl")]
    image_url: &'static str,
    #[serde(rename = "advertiserName")]
    advertiser_name: &'static str,
    perk: Option<&'static str>,
}

#[derive(Serialize)]
struct Answer {
    success: bool,
    offer: Option<Offer>,
}

struct Campaign {
    title: &'static str,
    description: Option<&'static str>,
    image: &'static str,
    advertiser: &'static str,
    perk: Option<&'static str>,
    /// Platforms the creative is compatible with.
    platforms: &'static [&'static str],
}

const CAMPAIGNS: &[Campaign] = &[
    Campaign {
        title: "Free Apple Music for 6 months",
        description: Some("Songs & Podcasts"),
        image: "https://storage.googleapis.com/encore-assets-prod/creatives/2c643fc5-91cb-4b0a-ba0a-0536c2c4f871/primary-1778695603093.png",
        advertiser: "Apple Music",
        perk: Some("6 months free"),
        platforms: &["ios", "web"],
    },
    Campaign {
        title: "Disney+ free for 30 days",
        description: Some("Movies & Series"),
        image: "https://storage.googleapis.com/encore-assets-prod/creatives/7a1f/primary.png",
        advertiser: "Disney+",
        perk: Some("30 days free"),
        platforms: &["android", "ios", "web"],
    },
    Campaign {
        title: "YouTube Premium trial",
        description: None,
        image: "https://storage.googleapis.com/encore-assets-prod/creatives/91bc/primary.png",
        advertiser: "YouTube",
        perk: None,
        platforms: &["android", "web"],
    },
];

/// Why a request body is refused (the partner's 400).
pub fn check_request(body: &[u8]) -> Result<(String, String, String), Problem> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "Malformed request: body is not JSON".to_string())?;
    let s = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    s(&v, "clientId").ok_or("Malformed request: missing clientId")?;
    let chat = s(&v, "chatId").ok_or("Malformed request: missing chatId")?;
    let attrs = v
        .get("attributes")
        .ok_or("Malformed request: missing attributes")?;
    let country =
        s(attrs, "countryCode").ok_or("Malformed request: invalid attributes.countryCode")?;
    let platform = s(attrs, "platform").ok_or("Malformed request: invalid attributes.platform")?;
    s(attrs, "language").ok_or("Malformed request: invalid attributes.language")?;
    Ok((chat, country, platform))
}

fn short_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// The 200 body for a valid request.
pub fn answer(chat_id: &str, country: &str, platform: &str) -> Vec<u8> {
    let offer = if OFFER_COUNTRIES.contains(&country) {
        let eligible: Vec<&Campaign> = CAMPAIGNS
            .iter()
            .filter(|c| c.platforms.contains(&platform))
            .collect();
        // The same conversation is steered to the same campaign (bandit seeding).
        let seed = chat_id
            .bytes()
            .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
        eligible.get(seed % eligible.len().max(1)).map(|c| Offer {
            click_url: format!("https://link.encorekit.com/{}", short_code()),
            title: c.title,
            description: c.description,
            image_url: c.image,
            advertiser_name: c.advertiser,
            perk: c.perk,
        })
    } else {
        None
    };
    serde_json::to_vec(&Answer {
        success: true,
        offer,
    })
    .unwrap_or_default()
}
