//! `user_profiles`: names in many scripts, NULLs where sign-up skipped them,
//! skewed activity, and each user's pool of reused media URLs.

use rand::Rng;

use super::{between, hex, maybe, maybe_with, new_uuid, pick, R};
use crate::legacy::model::{User, BASE, DAY, END};
use crate::legacy::words::{EMAIL_DOMAINS, FIRST_NAMES, HANDLE_WORDS, LAST_NAMES, TOPICS};

pub(super) fn gen_users(rng: &mut R, n: usize) -> Vec<User> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let (first, first_ascii) = *pick(rng, FIRST_NAMES);
        let (last, last_ascii) = *pick(rng, LAST_NAMES);
        let handle = match rng.random_range(0..3) {
            0 => format!("{first_ascii}.{}", pick(rng, HANDLE_WORDS)),
            1 => format!("{first_ascii}_{last_ascii}{}", rng.random_range(1..100)),
            _ => format!("the{first_ascii}{}", pick(rng, HANDLE_WORDS)),
        };
        // The index keeps emails unique; some clients kept the user's casing.
        let email = if rng.random_bool(0.05) {
            format!(
                "{first}.{last_ascii}{i}@{}",
                pick(rng, EMAIL_DOMAINS).to_uppercase()
            )
        } else {
            format!("{first_ascii}.{last_ascii}{i}@{}", pick(rng, EMAIL_DOMAINS))
        };
        let email = maybe(rng, 0.05, email).filter(|_| i != 3);
        let full_name = maybe(rng, 0.1, format!("{first} {last}")).filter(|_| i != 1);
        let instagram_username = maybe(rng, 0.15, handle.clone()).filter(|_| i != 2);
        let id = new_uuid(rng);
        let avatar_url = maybe_with(rng, 0.3, |rng| {
            format!("https://avatars.affinity.app/{}.png", hex(rng, 16))
        });
        let plan = match i {
            0 => "free",
            1 => "pro",
            2 => "business",
            _ => match rng.random_range(0..100) {
                0..65 => "free",
                65..90 => "pro",
                _ => "business",
            },
        };
        let created_at = between(rng, BASE, BASE + (END - BASE) * 4 / 5);
        let updated_at = created_at + between(rng, 0, 120 * DAY);
        let followers = 10f64.powf(1.5 + 4.5 * rng.random::<f64>().powi(2));
        // Some users never post (8% by choice, more by chance); the first
        // always does, the last never.
        let activity = if i == 0 {
            1.0
        } else if (i == n - 1) || rng.random_bool(0.08) {
            0.0
        } else {
            1.0 + 8.0 * rng.random::<f64>().powi(3)
        };
        let main = rng.random_range(0..TOPICS.len());
        let second = rng.random_range(0..TOPICS.len());
        let url_style = rng.random_range(0..3u8);
        let mut user = User {
            id,
            email,
            full_name,
            avatar_url,
            instagram_username,
            plan,
            created_at,
            updated_at,
            handle,
            followers,
            activity,
            topics: (main, second),
            url_style,
            url_pool: Vec::new(),
        };
        let pool_size = rng.random_range(2..=10);
        user.url_pool = (0..pool_size)
            .map(|_| media_url(rng, &user, false))
            .collect();
        users.push(user);
    }
    users
}

/// A media URL in one of the styles the app used over time; the Cloudinary
/// style carries commas in its path.
pub(super) fn media_url(rng: &mut R, user: &User, video: bool) -> String {
    let ext = if video { "mp4" } else { "jpg" };
    match user.url_style {
        0 => format!(
            "https://cdn.affinity.app/u/{}/{}.{ext}",
            user.handle,
            hex(rng, 16)
        ),
        1 => format!(
            "https://res.cloudinary.com/affinity/{}/upload/c_fill,w_1080,h_1350/v{}/{}/{}.{ext}",
            if video { "video" } else { "image" },
            rng.random_range(1_600_000_000u64..1_750_000_000),
            user.handle,
            hex(rng, 12)
        ),
        _ => format!(
            "https://xyzcompany.supabase.co/storage/v1/object/public/media/{}/{}.{ext}",
            user.id,
            hex(rng, 20)
        ),
    }
}
