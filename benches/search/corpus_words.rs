//! The exact-term set's vocabulary: topics and their words, caption templates, term parts.

pub(super) const TOPICS: [(&str, [&str; 6]); 12] = [
    (
        "coffee",
        [
            "espresso",
            "grinder",
            "latte",
            "pour over",
            "roast",
            "burr set",
        ],
    ),
    (
        "hiking",
        ["trail", "summit", "backpack", "boots", "ridge", "campsite"],
    ),
    (
        "pets",
        [
            "puppy",
            "leash",
            "kitten",
            "dog park",
            "treats",
            "vet visit",
        ],
    ),
    (
        "baking",
        [
            "sourdough",
            "oven",
            "croissant",
            "starter",
            "flour",
            "proofing",
        ],
    ),
    (
        "cycling",
        [
            "gravel bike",
            "saddle",
            "climb",
            "cassette",
            "helmet",
            "group ride",
        ],
    ),
    (
        "skincare",
        [
            "serum",
            "sunscreen",
            "moisturizer",
            "cleanser",
            "retinol",
            "toner",
        ],
    ),
    (
        "photography",
        [
            "lens",
            "tripod",
            "golden hour",
            "shutter",
            "portrait",
            "film roll",
        ],
    ),
    (
        "gardening",
        [
            "tomatoes",
            "compost",
            "seedlings",
            "raised bed",
            "pruning",
            "mulch",
        ],
    ),
    (
        "fitness",
        [
            "deadlift",
            "kettlebell",
            "warm up",
            "squat rack",
            "mobility",
            "rest day",
        ],
    ),
    (
        "travel",
        [
            "airport",
            "itinerary",
            "hostel",
            "night train",
            "old town",
            "carry-on",
        ],
    ),
    (
        "music",
        ["guitar", "vinyl", "setlist", "studio", "synth", "rehearsal"],
    ),
    (
        "gaming",
        [
            "controller",
            "speedrun",
            "boss fight",
            "co-op",
            "patch notes",
            "headset",
        ],
    ),
];

pub(super) const TEMPLATES: [&str; 8] = [
    "Loving the new {0} we tried this week, and the {1} too.",
    "Tips for a better {0}: start with the {1}, then the {2}.",
    "Our {0} setup finally feels right, thanks to the {1}.",
    "Anyone else obsessed with {0}? The {1} makes all the difference.",
    "Weekend plans: {0}, {1} and a bit of {2}.",
    "Quick review of the {0}: solid {1}, great {2}.",
    "Three things we learned about {0} and {1} this month.",
    "Behind the scenes of our {0} day with the {1}.",
];

pub(super) const SYLLABLES: [&str; 16] = [
    "brew", "lab", "nova", "kite", "moss", "fern", "pix", "volt", "ember", "tide", "quill", "zest",
    "loom", "arc", "dune", "hive",
];
pub(super) const PLACES: [&str; 10] = [
    "mtl", "nyc", "ldn", "syd", "ber", "par", "tko", "sfo", "yyz", "bcn",
];
pub(super) const FIRST: [&str; 24] = [
    "Marguerite",
    "Tobias",
    "Ingrid",
    "Kwame",
    "Soledad",
    "Ravi",
    "Henrike",
    "Desmond",
    "Yuki",
    "Anouk",
    "Bartholomew",
    "Zainab",
    "Leopold",
    "Oluwaseun",
    "Frederike",
    "Matthias",
    "Imogen",
    "Thandiwe",
    "Casimir",
    "Eleonora",
    "Pascale",
    "Gunnar",
    "Rosalind",
    "Ignatius",
];
pub(super) const LAST: [&str; 24] = [
    "Okafor",
    "Lindqvist",
    "Castellanos",
    "Abernathy",
    "Nakamura",
    "Fairbanks",
    "Delacroix",
    "Mwangi",
    "Oyelaran",
    "Van der Berg",
    "Przybylski",
    "Haverford",
    "Quintero",
    "Achterberg",
    "Szymanski",
    "Ferreira",
    "Halvorsen",
    "Kowalczyk",
    "Montgomery",
    "Rautenbach",
    "Villeneuve",
    "Yamamoto",
    "Zielinski",
    "Brightwater",
];
