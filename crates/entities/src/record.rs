//! Stored records: the built-in fields the platform manages, and the data the app declares.

use serde_json::{Map, Value, json};

/// The built-in fields, in the order records show them.
pub const BUILT_IN_FIELDS: [&str; 6] =
    ["id", "created_date", "updated_date", "created_by", "created_by_id", "is_sample"];

/// A built-in field: a column of its own in the store, usable in queries and sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltIn {
    Id,
    CreatedDate,
    UpdatedDate,
    CreatedBy,
    CreatedById,
    IsSample,
}

impl BuiltIn {
    pub fn parse(name: &str) -> Option<BuiltIn> {
        Some(match name {
            "id" => BuiltIn::Id,
            "created_date" => BuiltIn::CreatedDate,
            "updated_date" => BuiltIn::UpdatedDate,
            "created_by" => BuiltIn::CreatedBy,
            "created_by_id" => BuiltIn::CreatedById,
            "is_sample" => BuiltIn::IsSample,
            _ => return None,
        })
    }

    /// The column's name (the same as the field's).
    pub fn column(self) -> &'static str {
        match self {
            BuiltIn::Id => "id",
            BuiltIn::CreatedDate => "created_date",
            BuiltIn::UpdatedDate => "updated_date",
            BuiltIn::CreatedBy => "created_by",
            BuiltIn::CreatedById => "created_by_id",
            BuiltIn::IsSample => "is_sample",
        }
    }

    /// Whether the column may be NULL (`created_by`, `created_by_id`: records made without a
    /// user).
    pub fn nullable(self) -> bool {
        matches!(self, BuiltIn::CreatedBy | BuiltIn::CreatedById)
    }

    /// Whether the column is a boolean (`is_sample`); the others are text.
    pub fn is_bool(self) -> bool {
        self == BuiltIn::IsSample
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// ISO 8601 with milliseconds and `Z` (`toISOString()`), so text order is time order.
    pub created_date: String,
    pub updated_date: String,
    /// The creator's e-mail; `None` for records made by the service role or anonymously.
    pub created_by: Option<String>,
    pub created_by_id: Option<String>,
    pub is_sample: bool,
    /// The declared fields (never a built-in name).
    pub data: Map<String, Value>,
}

impl Record {
    /// The record as the API answers it: the data, then the built-in fields.
    pub fn to_json(&self) -> Value {
        let mut map = self.data.clone();
        map.insert("id".into(), json!(self.id));
        map.insert("created_date".into(), json!(self.created_date));
        map.insert("updated_date".into(), json!(self.updated_date));
        map.insert("created_by".into(), json!(self.created_by));
        map.insert("created_by_id".into(), json!(self.created_by_id));
        map.insert("is_sample".into(), json!(self.is_sample));
        Value::Object(map)
    }

    /// Reads a record from its JSON form (built-ins and data together).
    pub fn from_json(value: &Value) -> Option<Record> {
        let map = value.as_object()?;
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
        let mut data = map.clone();
        for key in BUILT_IN_FIELDS {
            data.remove(key);
        }
        Some(Record {
            id: text("id")?,
            created_date: text("created_date")?,
            updated_date: text("updated_date")?,
            created_by: text("created_by"),
            created_by_id: text("created_by_id"),
            is_sample: map.get("is_sample").and_then(Value::as_bool).unwrap_or(false),
            data,
        })
    }
}

/// `time` (milliseconds since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_millis(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_have_milliseconds_and_sort_as_text() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert!(iso_millis(999) < iso_millis(1000));
    }

    #[test]
    fn records_round_trip_through_json() {
        let mut data = Map::new();
        data.insert("title".into(), json!("a"));
        let record = Record {
            id: "r1".into(),
            created_date: iso_millis(1),
            updated_date: iso_millis(2),
            created_by: Some("ann@example.test".into()),
            created_by_id: None,
            is_sample: false,
            data,
        };
        let json = record.to_json();
        assert_eq!(json["title"], "a");
        assert_eq!(json["created_by_id"], Value::Null);
        assert_eq!(Record::from_json(&json).unwrap(), record);
    }
}
