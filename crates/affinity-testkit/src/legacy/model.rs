//! The rows of every legacy table, as generated, and the time scale.

use uuid::Uuid;

use super::embed::Emb;

pub(super) const SEC: i64 = 1_000_000;
pub(super) const MIN: i64 = 60 * SEC;
pub(super) const HOUR: i64 = 60 * MIN;
pub(super) const DAY: i64 = 24 * HOUR;
/// 2024-01-01T00:00:00Z.
pub(super) const BASE: i64 = 1_704_067_200 * SEC;
/// 2025-06-30T00:00:00Z.
pub(super) const END: i64 = 1_751_241_600 * SEC;

pub(super) struct Data {
    pub(super) centroid_seed: u64,
    pub(super) users: Vec<User>,
    pub(super) posts: Vec<Post>,
    pub(super) snapshots: Vec<Snapshot>,
    pub(super) chats: Vec<ChatMessage>,
    pub(super) generations: Vec<Generation>,
    pub(super) hashtag_stats: Vec<HashtagStat>,
    pub(super) scraped_posts: Vec<ScrapedPost>,
    pub(super) scraped_data: Vec<ScrapedData>,
}

pub(super) struct User {
    pub(super) id: Uuid,
    pub(super) email: Option<String>,
    pub(super) full_name: Option<String>,
    pub(super) avatar_url: Option<String>,
    pub(super) instagram_username: Option<String>,
    pub(super) plan: &'static str,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    // Generation only.
    pub(super) handle: String,
    pub(super) followers: f64,
    /// Relative posting activity; 0 for users who never post.
    pub(super) activity: f64,
    pub(super) topics: (usize, usize),
    pub(super) url_style: u8,
    pub(super) url_pool: Vec<String>,
}

pub(super) struct Post {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) platform: &'static str,
    pub(super) external_id: Option<String>,
    pub(super) status: &'static str,
    pub(super) caption: Option<String>,
    pub(super) content: Option<String>,
    pub(super) hashtags: Vec<String>,
    pub(super) media_urls: Vec<String>,
    pub(super) media_type: Option<&'static str>,
    pub(super) thumbnail_url: Option<String>,
    pub(super) permalink: Option<String>,
    pub(super) scheduled_at: Option<i64>,
    pub(super) published_at: Option<i64>,
    pub(super) counters: Counters,
    pub(super) insights: Option<String>,
    pub(super) embedding: Option<Emb>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    // Generation only.
    pub(super) user_idx: usize,
    pub(super) shortcode: Option<String>,
}

/// A post's counters, all 0 until it is published, and the engagement rate
/// the app computed from them.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) likes: i32,
    pub(super) comments: i32,
    pub(super) shares: i32,
    pub(super) saves: i32,
    pub(super) reach: i32,
    pub(super) impressions: i32,
    /// Thousandths of a percent.
    pub(super) engagement_rate: Option<i32>,
}

pub(super) struct Snapshot {
    pub(super) post_id: Uuid,
    pub(super) recorded_at: i64,
    /// likes, comments, shares, saves, reach, impressions.
    pub(super) counters: [Option<i32>; 6],
    pub(super) engagement_rate: Option<i32>,
}

pub(super) struct ChatMessage {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) session_id: Uuid,
    pub(super) role: &'static str,
    pub(super) content: String,
    pub(super) embedding: Option<Emb>,
    pub(super) created_at: i64,
}

pub(super) struct Generation {
    pub(super) id: Uuid,
    pub(super) user_id: Option<Uuid>,
    pub(super) prompt: String,
    pub(super) generated_content: Option<String>,
    pub(super) model: Option<&'static str>,
    pub(super) created_at: i64,
}

pub(super) struct HashtagStat {
    pub(super) user_id: Option<Uuid>,
    pub(super) hashtag: String,
    pub(super) post_count: i32,
    pub(super) avg_engagement: Option<i32>,
    pub(super) updated_at: i64,
}

pub(super) struct ScrapedPost {
    pub(super) id: Uuid,
    pub(super) user_id: Option<Uuid>,
    pub(super) shortcode: String,
    pub(super) owner_username: String,
    pub(super) caption: Option<String>,
    pub(super) like_count: Option<i32>,
    pub(super) comment_count: Option<i32>,
    pub(super) media_url: Option<String>,
    pub(super) taken_at: Option<i64>,
    pub(super) scraped_at: i64,
}

pub(super) struct ScrapedData {
    pub(super) user_id: Option<Uuid>,
    pub(super) post_shortcode: String,
    pub(super) username: String,
    pub(super) caption_text: Option<String>,
    pub(super) likes: Option<i32>,
    pub(super) comments: Option<i32>,
    pub(super) display_url: Option<String>,
    pub(super) posted_at: Option<i64>,
    pub(super) raw: Option<String>,
    pub(super) created_at: i64,
}
