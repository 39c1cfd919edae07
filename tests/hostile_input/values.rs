//! Hostile values: strings, ids, floats, vectors, numbers, enums, timestamps, tokens, metadata.
use proptest::prelude::*;
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use uuid::Uuid;

use crate::cases::Seeded;

// ------------------------------------------------------------ strategies

pub(crate) fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("x".repeat(10 * 1024)),
        Just("'; DROP TABLE time_series_metrics; --".to_string()),
        Just("'); DROP TABLE organizations; --".to_string()),
        Just("\"quoted\" 'single' `back`".to_string()),
        Just("nul\0byte".to_string()),
        Just("\0".to_string()),
        Just("%_\\".to_string()),
        Just("\u{202e}rtl \u{fffd} \u{1f600}".to_string()),
        Just("post".to_string()),
        Just("ai_context".to_string()),
        "[a-z_]{1,16}",
        any::<String>(),
    ]
    .boxed()
}

pub(crate) fn uuid_string(seeded: &Seeded) -> BoxedStrategy<String> {
    let known = vec![
        seeded.org.to_string(),
        seeded.owner.to_string(),
        seeded.entity.to_string(),
        seeded.org.to_string().to_uppercase(),
        format!("{{{}}}", seeded.org),
        seeded.org.simple().to_string(),
        Uuid::nil().to_string(),
        Uuid::max().to_string(),
        "not-a-uuid".to_string(),
    ];
    prop_oneof![
        4 => proptest::sample::select(known),
        2 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => hostile_string(),
    ]
    .boxed()
}

pub(crate) fn hostile_f32() -> BoxedStrategy<f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(-1.0),
        Just(2.0),
        Just(0.5),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
        any::<f32>(),
    ]
    .boxed()
}

pub(crate) fn hostile_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(42.0),
        any::<f64>(),
    ]
    .boxed()
}

/// Vectors of the interesting lengths (none, one, the indexed dimensions,
/// one with no index, 100,000), filled with zeros, NaN, infinities or values.
pub(crate) fn hostile_vector() -> BoxedStrategy<Vec<f32>> {
    let len = prop_oneof![
        Just(0usize),
        Just(1),
        Just(3),
        Just(384),
        Just(768),
        Just(1536),
        Just(4000),
        Just(100_000),
    ];
    #[derive(Clone, Copy, Debug)]
    enum Fill {
        Zeros,
        Nan,
        Inf,
        OneNan,
        Values(u32),
    }
    let fill = prop_oneof![
        Just(Fill::Zeros),
        Just(Fill::Nan),
        Just(Fill::Inf),
        Just(Fill::OneNan),
        any::<u32>().prop_map(Fill::Values),
        any::<u32>().prop_map(Fill::Values),
    ];
    (len, fill)
        .prop_map(|(len, fill)| match fill {
            Fill::Zeros => vec![0.0; len],
            Fill::Nan => vec![f32::NAN; len],
            Fill::Inf => vec![f32::INFINITY; len],
            Fill::OneNan => {
                let mut v = vec![0.25; len];
                if let Some(last) = v.last_mut() {
                    *last = f32::NAN;
                }
                v
            }
            Fill::Values(seed) => (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5
                })
                .collect(),
        })
        .boxed()
}

pub(crate) fn hostile_u32() -> BoxedStrategy<u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(10),
        Just(1000),
        Just(1001),
        Just(u32::MAX),
        any::<u32>(),
    ]
    .boxed()
}

pub(crate) fn hostile_enum() -> BoxedStrategy<i32> {
    prop_oneof![
        4 => 0i32..=4,
        1 => Just(-1),
        1 => Just(5),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
    ]
    .boxed()
}

pub(crate) fn hostile_timestamp() -> BoxedStrategy<Option<Timestamp>> {
    let now = chrono::Utc::now().timestamp();
    let seconds = prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1),
        Just(-62_135_596_800), // 0001-01-01
        Just(-62_135_596_801),
        Just(253_402_300_799), // 9999-12-31T23:59:59
        Just(253_402_300_800),
        Just(now),
        Just(now - 86_400 * 40),
        Just(now + 86_400 * 400),
        any::<i64>(),
    ];
    let nanos = prop_oneof![
        Just(0i32),
        Just(-1),
        Just(999_999_999),
        Just(1_000_000_000),
        Just(i32::MIN),
        Just(i32::MAX),
    ];
    proptest::option::of((seconds, nanos).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }))
        .boxed()
}

pub(crate) fn hostile_time_zone() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("UTC".to_string()),
        Just("Europe/Berlin".to_string()),
        Just("America/New_York".to_string()),
        Just("Mars/Olympus_Mons".to_string()),
        Just("+05:00".to_string()),
        Just("EST5EDT".to_string()),
        Just("utc".to_string()),
        Just("UTC'; SELECT pg_sleep(30); --".to_string()),
        Just("Europe/Berlin' OR '1'='1".to_string()),
        hostile_string(),
    ]
    .boxed()
}

pub(crate) fn hostile_page_token() -> BoxedStrategy<String> {
    use base64::Engine;
    let bytes = proptest::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        Just(String::new()),
        bytes
            .clone()
            .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        bytes
            .clone()
            .prop_map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)),
        bytes.prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        hostile_string(),
    ]
    .boxed()
}

/// A protobuf Struct: none, small, with NaN/infinite numbers, nested, or 10 MB.
pub(crate) fn hostile_metadata() -> BoxedStrategy<Option<Struct>> {
    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }
    fn strukt(fields: Vec<(String, Value)>) -> Struct {
        Struct {
            fields: fields.into_iter().collect(),
        }
    }
    prop_oneof![
        Just(None),
        (hostile_string(), hostile_string())
            .prop_map(|(k, v)| Some(strukt(vec![(k, value(Kind::StringValue(v)))]))),
        hostile_f64().prop_map(|n| Some(strukt(vec![(
            "confidence".into(),
            value(Kind::NumberValue(n))
        )]))),
        Just(Some(strukt(vec![("empty".into(), Value { kind: None })]))),
        (1usize..40).prop_map(|depth| {
            let mut v = value(Kind::NullValue(0));
            for _ in 0..depth {
                v = value(Kind::ListValue(ListValue { values: vec![v] }));
                v = value(Kind::StructValue(strukt(vec![("k".into(), v)])));
            }
            Some(strukt(vec![("deep".into(), v)]))
        }),
        Just(Some(strukt(vec![(
            "blob".into(),
            value(Kind::StringValue("m".repeat(10 * 1024 * 1024)))
        )]))),
    ]
    .boxed()
}
