//! Word banks: topics, tags, caption lines, names.

pub(super) struct Topic {
    pub(super) name: &'static str,
    pub(super) phrases: &'static [&'static str],
    pub(super) tags: &'static [&'static str],
    pub(super) emoji: &'static [&'static str],
}

pub(super) const TOPICS: [Topic; 16] = [
    Topic {
        name: "fitness",
        phrases: &[
            "leg day",
            "a 6am run",
            "my protein smoothie",
            "this HIIT workout",
            "a slow yoga flow",
            "a new deadlift PR",
        ],
        tags: &[
            "fitness",
            "gym",
            "workout",
            "fitfam",
            "yoga",
            "running",
            "motivation",
        ],
        emoji: &["💪", "🏋️", "🔥", "🧘‍♀️", "🏃‍♀️"],
    },
    Topic {
        name: "travel",
        phrases: &[
            "sunset in Lisbon",
            "this hidden beach",
            "the train through the Alps",
            "the market in Marrakech",
            "a weekend in Kyoto",
            "our road trip",
        ],
        tags: &[
            "travel",
            "wanderlust",
            "travelgram",
            "explore",
            "roadtrip",
            "beachlife",
        ],
        emoji: &["✈️", "🌍", "🏝️", "🗺️", "🌅"],
    },
    Topic {
        name: "food",
        phrases: &[
            "homemade pasta",
            "my sourdough starter",
            "ramen night",
            "vegan brownies",
            "taco Tuesday",
            "this brunch spread",
        ],
        tags: &["food", "foodie", "recipe", "homecooking", "vegan", "brunch"],
        emoji: &["🍝", "🍜", "🥑", "🍰", "🌮"],
    },
    Topic {
        name: "fashion",
        phrases: &[
            "the fall lookbook",
            "thrifted denim",
            "a capsule wardrobe",
            "street style in Milan",
            "the new drop",
        ],
        tags: &["fashion", "ootd", "style", "streetstyle", "thrift"],
        emoji: &["👗", "👠", "🧥", "🕶️"],
    },
    Topic {
        name: "tech",
        phrases: &[
            "my new desk setup",
            "this mechanical keyboard",
            "AI tools I use daily",
            "the side project launch",
            "productivity apps",
        ],
        tags: &["tech", "setup", "coding", "ai", "startup", "productivity"],
        emoji: &["💻", "⌨️", "🤖", "🚀"],
    },
    Topic {
        name: "photography",
        phrases: &[
            "golden hour",
            "shooting on 35mm film",
            "a long exposure",
            "this portrait session",
            "blue hour in the city",
        ],
        tags: &[
            "photography",
            "photooftheday",
            "filmisnotdead",
            "goldenhour",
            "portrait",
        ],
        emoji: &["📸", "🎞️", "🌄"],
    },
    Topic {
        name: "pets",
        phrases: &[
            "puppy zoomies",
            "the longest cat nap",
            "adoption day",
            "the dog park",
            "his new toy",
        ],
        tags: &[
            "dogsofinstagram",
            "catsofinstagram",
            "pets",
            "adoptdontshop",
            "puppy",
        ],
        emoji: &["🐶", "🐱", "🐾", "🦴"],
    },
    Topic {
        name: "beauty",
        phrases: &[
            "my skincare routine",
            "no-makeup makeup",
            "the summer glow",
            "this nail art",
        ],
        tags: &["skincare", "beauty", "makeup", "glowup", "nails"],
        emoji: &["💄", "✨", "💅", "🧴"],
    },
    Topic {
        name: "music",
        phrases: &[
            "the studio session",
            "our new single",
            "live at the Roxy",
            "a vinyl haul",
            "this guitar cover",
        ],
        tags: &["music", "newmusic", "livemusic", "vinyl", "guitar"],
        emoji: &["🎸", "🎶", "🎤", "🎧"],
    },
    Topic {
        name: "parenting",
        phrases: &[
            "the first day of school",
            "toddler art",
            "a family hike",
            "bedtime stories",
        ],
        tags: &["momlife", "parenting", "dadlife", "familytime", "kids"],
        emoji: &["👶", "👨‍👩‍👧", "🧸"],
    },
    Topic {
        name: "finance",
        phrases: &[
            "the monthly budget check-in",
            "index funds 101",
            "side hustle income",
            "saving for a house",
        ],
        tags: &["personalfinance", "investing", "budgeting", "money", "fire"],
        emoji: &["💸", "📈", "💰"],
    },
    Topic {
        name: "gaming",
        phrases: &[
            "the ranked grind",
            "this retro console",
            "a speedrun attempt",
            "the new controller",
        ],
        tags: &["gaming", "gamer", "twitch", "retrogaming", "esports"],
        emoji: &["🎮", "🕹️", "👾"],
    },
    Topic {
        name: "home",
        phrases: &[
            "the living room makeover",
            "my plant corner",
            "DIY shelves",
            "a cozy reading nook",
        ],
        tags: &["homedecor", "interiordesign", "diy", "plants", "cozyhome"],
        emoji: &["🏡", "🪴", "🛋️"],
    },
    Topic {
        name: "sustainability",
        phrases: &[
            "zero waste swaps",
            "the beach cleanup",
            "compost 101",
            "buying secondhand first",
        ],
        tags: &[
            "sustainability",
            "zerowaste",
            "ecofriendly",
            "climateaction",
            "slowfashion",
        ],
        emoji: &["🌱", "♻️", "🌎"],
    },
    Topic {
        name: "coffee",
        phrases: &[
            "latte art practice",
            "a slow pour-over",
            "the new roastery",
            "cold brew season",
        ],
        tags: &["coffee", "coffeetime", "latteart", "barista", "cafe"],
        emoji: &["☕", "🥐"],
    },
    Topic {
        name: "art",
        phrases: &[
            "a watercolor study",
            "my sketchbook tour",
            "the mural in progress",
            "commissions opening",
        ],
        tags: &["art", "artist", "illustration", "sketchbook", "watercolor"],
        emoji: &["🎨", "🖌️", "✏️"],
    },
];

pub(super) const GENERIC_TAGS: &[&str] = &[
    "instagood",
    "reels",
    "explorepage",
    "love",
    "photooftheday",
    "instadaily",
    "fyp",
    "viral",
];

/// Hashtags a buggy client really stored: spaces, commas, quotes, braces, a
/// backslash, the word NULL, non-ASCII, and the same tag twice.
pub(super) const AWKWARD_TAGS: &[&str] = &[
    "summer vibes",
    "a,b",
    "say \"hi\"",
    "{braces}",
    "back\\slash",
    "NULL",
    "日本旅行",
    "café",
    "travel",
    "travel",
];

pub(super) const TEMPLATES: &[&str] = &[
    "{p} {e}",
    "Nothing beats {p} {e}",
    "Day 3 of {p} and I'm hooked {e}",
    "{p} — swipe for details ➡️",
    "POV: {p} {e}{e}",
    "Tried {p} for the first time today. Thoughts? {e}",
    "Our guide to {p} is finally live! Link in bio {e}",
    "Throwback to {p} {e}",
    "{p}, but make it cozy {e}",
];

pub(super) const GENERIC_LINES: &[&str] = &[
    "Link in bio.",
    "Save this for later 📌",
    "Tag someone who needs this!",
    "Which one is your favorite: 1, 2 or 3?",
    "Drop a ❤️ if you agree.",
    "More on stories.",
    "Thank you for 10k! 🙏",
    "New post every Tuesday.",
    "Who's joining me next time?",
];

pub(super) const INTL_LINES: &[&str] = &[
    "Danke für 10k Follower – ihr seid großartig 💛",
    "今日のカフェ巡り☕️ 最高でした！",
    "¡Qué día tan increíble en la playa! 🌊",
    "Merci à tous, à bientôt à Paris 🇫🇷",
    "Привет из Санкт-Петербурга! ❄️",
    "شكرا لكم جميعا ❤️",
    "오늘도 화이팅! 💪",
    "Ελπίζω να σας αρέσει 🌞",
    "Cảm ơn các bạn rất nhiều 🙏",
    "Zażółć gęślą jaźń 🇵🇱",
];

/// Text that is hard to escape: quotes, backslashes, tabs, CRLF, braces.
pub(super) const SPICY_LINES: &[&str] = &[
    "My coach said: \"don't skip leg day\" 😅",
    "It's the 'little things' that count.",
    "¯\\_(ツ)_/¯",
    "Saved to C:\\Users\\me\\Pictures\\insta — old habits.",
    "Recipe:\n- flour\t500 g\n- water\t350 g\n- salt\t10 g",
    "Line one\r\nLine two (sent from my old phone)",
    "Use \\n for new lines, they said. It's fine.",
    "{braces} and [brackets] and, commas, everywhere",
    "Quote of the day: “Stay hungry, stay foolish.”",
    "50% off 🤑 — code \"SUMMER24\" at checkout",
];

pub(super) const SUGGESTIONS: &[&str] = &[
    "Post between 6 and 8 pm for more reach",
    "Add a call to action like \"Save this\"",
    "Use 3–5 niche hashtags instead of 30 generic ones",
    "Start with a stronger hook in the first line",
    "Try a carousel: they get 1.4× more saves",
    "Reply to comments in the first hour 💬",
    "Add alt text for accessibility",
];

pub(super) const FIRST_NAMES: &[(&str, &str)] = &[
    ("Emma", "emma"),
    ("Liam", "liam"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Søren", "soren"),
    ("Łukasz", "lukasz"),
    ("François", "francois"),
    ("Aoife", "aoife"),
    ("Mei", "mei"),
    ("Yuki", "yuki"),
    ("Priya", "priya"),
    ("Mohammed", "mohammed"),
    ("Olga", "olga"),
    ("Noah", "noah"),
    ("Chloé", "chloe"),
    ("Mateo", "mateo"),
    ("Amara", "amara"),
    ("Jonas", "jonas"),
];

pub(super) const LAST_NAMES: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("O'Brien", "obrien"),
    ("García", "garcia"),
    ("Müller", "muller"),
    ("Nguyễn", "nguyen"),
    ("Kowalski", "kowalski"),
    ("Tanaka", "tanaka"),
    ("Rossi", "rossi"),
    ("Dubois", "dubois"),
    ("Haddad", "haddad"),
    ("Johansson", "johansson"),
    ("Patel", "patel"),
];

pub(super) const HANDLE_WORDS: &[&str] = &[
    "travels", "eats", "studio", "daily", "official", "creates", "lab", "journal", "co", "hq",
];

pub(super) const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "icloud.com",
    "yahoo.com",
    "proton.me",
];

pub(super) const MODELS: &[&str] = &[
    "gpt-3.5-turbo",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-4o-mini",
    "claude-3-haiku",
];
