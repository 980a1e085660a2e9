//! A CBOR body as iotivity-lite's `oc_rep` parser sees it (api/oc_rep_decode.c,
//! `oc_parse_rep_value`), so that the strict checks look at the same types the real client's
//! handlers look at: text keys only, tags skipped, an empty array is nil, an array holds one type
//! only, integers are int64.

use ciborium::Value;

/// A map's properties in wire order (iotivity-lite keeps them as a linked list and looks keys up
/// by name and type, first match wins).
pub(crate) type Object = Vec<(String, Rep)>;

/// One value, as an `oc_rep_t` types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rep {
    /// `OC_REP_NIL`: null, or an empty array.
    Nil,
    /// `OC_REP_INT`.
    Int(i64),
    /// `OC_REP_DOUBLE`.
    Double,
    /// `OC_REP_BOOL`.
    Bool,
    /// `OC_REP_BYTE_STRING`.
    Bytes(Vec<u8>),
    /// `OC_REP_STRING`.
    String(String),
    /// `OC_REP_OBJECT`.
    Object(Object),
    /// `OC_REP_INT_ARRAY`, `OC_REP_DOUBLE_ARRAY`, `OC_REP_BOOL_ARRAY` or
    /// `OC_REP_BYTE_STRING_ARRAY`: nothing the provisioning handlers read.
    ScalarArray,
    /// `OC_REP_STRING_ARRAY`.
    StringArray(Vec<String>),
    /// `OC_REP_OBJECT_ARRAY`.
    ObjectArray(Vec<Object>),
}

impl Rep {
    /// The `oc_rep` type name, for diagnostics.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Rep::Nil => "nil",
            Rep::Int(_) => "int",
            Rep::Double => "double",
            Rep::Bool => "bool",
            Rep::Bytes(_) => "byte string",
            Rep::String(_) => "string",
            Rep::Object(_) => "object",
            Rep::ScalarArray => "scalar array",
            Rep::StringArray(_) => "string array",
            Rep::ObjectArray(_) => "object array",
        }
    }
}

/// The root map of a response body, or why `oc_parse_rep` would refuse it.
pub(crate) fn parse_root(payload: &[u8]) -> Result<Object, String> {
    let value: Value = dps_server::proto::body::from_cbor(payload).map_err(|e| e.to_string())?;
    match parse(value)? {
        Rep::Object(root) => Ok(root),
        other => Err(format!("the body is a {}, not a map", other.type_name())),
    }
}

fn parse(value: Value) -> Result<Rep, String> {
    Ok(match value {
        // cbor_value_skip_tag.
        Value::Tag(_, inner) => return parse(*inner),
        Value::Integer(i) => Rep::Int(int64(i)?),
        Value::Float(_) => Rep::Double,
        Value::Bool(_) => Rep::Bool,
        Value::Null => Rep::Nil,
        Value::Bytes(b) => Rep::Bytes(b),
        Value::Text(t) => Rep::String(t),
        Value::Map(entries) => Rep::Object(object(entries)?),
        Value::Array(items) => array(items)?,
        other => return Err(format!("unsupported CBOR item {other:?}")),
    })
}

fn int64(i: ciborium::value::Integer) -> Result<i64, String> {
    i64::try_from(i128::from(i)).map_err(|_| "integer outside int64".to_owned())
}

/// rep_parse_key: every key is a text string.
fn object(entries: Vec<(Value, Value)>) -> Result<Object, String> {
    entries
        .into_iter()
        .map(|(k, v)| match k {
            Value::Text(name) => Ok((name, parse(v)?)),
            other => Err(format!("a map key that is not text: {other:?}")),
        })
        .collect()
}

/// rep_parse_array_init / rep_array_value_type_check: an empty array is nil; otherwise every item
/// has the first item's type, and arrays of arrays (or of nulls, or tagged items) are refused.
fn array(items: Vec<Value>) -> Result<Rep, String> {
    let Some(first) = items.first() else {
        return Ok(Rep::Nil);
    };
    let same = |pred: fn(&Value) -> bool| -> Result<(), String> {
        if items.iter().all(pred) {
            Ok(())
        } else {
            Err("an array mixing item types".to_owned())
        }
    };
    match first {
        Value::Map(_) => {
            same(Value::is_map)?;
            let objects = items
                .into_iter()
                .map(|v| match v {
                    Value::Map(entries) => object(entries),
                    _ => Err("an array mixing item types".to_owned()),
                })
                .collect::<Result<_, _>>()?;
            Ok(Rep::ObjectArray(objects))
        }
        Value::Text(_) => {
            same(Value::is_text)?;
            Ok(Rep::StringArray(
                items
                    .into_iter()
                    .filter_map(|v| v.into_text().ok())
                    .collect(),
            ))
        }
        Value::Integer(_) => {
            same(Value::is_integer)?;
            for v in items {
                if let Value::Integer(i) = v {
                    int64(i)?;
                }
            }
            Ok(Rep::ScalarArray)
        }
        Value::Float(_) => same(Value::is_float).map(|()| Rep::ScalarArray),
        Value::Bool(_) => same(Value::is_bool).map(|()| Rep::ScalarArray),
        Value::Bytes(_) => same(Value::is_bytes).map(|()| Rep::ScalarArray),
        other => Err(format!("an array of {other:?}")),
    }
}

/// oc_rep_get_by_type_and_key for a string: the first property named `key` that is a string.
pub(crate) fn string<'a>(obj: &'a Object, key: &str) -> Option<&'a str> {
    obj.iter().find_map(|(k, v)| match v {
        Rep::String(s) if k == key => Some(s.as_str()),
        _ => None,
    })
}

/// oc_str_to_uuid_v1 (api/oc_uuid.c): of the first 36 characters, the ones that are not `-` must
/// fill exactly 16 bytes (it is lax about which characters they are, as the real parser is).
pub(crate) fn oc_uuid_parses(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let digits = s.bytes().take(36).filter(|b| *b != b'-').count();
    (32..34).contains(&digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(v: &Value) -> Vec<u8> {
        dps_server::proto::body::to_cbor(v).expect("encode")
    }

    #[test]
    fn types_values_as_oc_rep_does() {
        let body = Value::Map(vec![
            (Value::Text("s".into()), Value::Text("x".into())),
            (Value::Text("empty".into()), Value::Array(vec![])),
            (
                Value::Text("tagged".into()),
                Value::Tag(1, Box::new(Value::Integer(7.into()))),
            ),
            (
                Value::Text("strings".into()),
                Value::Array(vec![Value::Text("*".into())]),
            ),
            (
                Value::Text("objects".into()),
                Value::Array(vec![Value::Map(vec![])]),
            ),
        ]);
        let root = parse_root(&cbor(&body)).expect("parses");
        assert_eq!(string(&root, "s"), Some("x"));
        assert_eq!(root[1].1, Rep::Nil);
        assert_eq!(root[2].1, Rep::Int(7));
        assert_eq!(root[3].1, Rep::StringArray(vec!["*".into()]));
        assert_eq!(root[4].1, Rep::ObjectArray(vec![vec![]]));
        assert_eq!(string(&root, "tagged"), None, "found by name and type");
    }

    #[test]
    fn refuses_what_oc_rep_refuses() {
        let mixed = Value::Map(vec![(
            Value::Text("a".into()),
            Value::Array(vec![Value::Text("x".into()), Value::Integer(1.into())]),
        )]);
        assert!(parse_root(&cbor(&mixed)).is_err());
        let int_key = Value::Map(vec![(Value::Integer(1.into()), Value::Null)]);
        assert!(parse_root(&cbor(&int_key)).is_err());
        let nested = Value::Map(vec![(
            Value::Text("a".into()),
            Value::Array(vec![Value::Array(vec![Value::Null])]),
        )]);
        assert!(parse_root(&cbor(&nested)).is_err());
        let big = Value::Map(vec![(
            Value::Text("a".into()),
            Value::Integer(u64::MAX.into()),
        )]);
        assert!(parse_root(&cbor(&big)).is_err());
        assert!(parse_root(&cbor(&Value::Array(vec![]))).is_err());
    }

    #[test]
    fn uuid_parsing_is_as_lax_as_the_real_one() {
        assert!(oc_uuid_parses("3fa85f64-5717-4562-b3fc-2c963f66afa6"));
        assert!(oc_uuid_parses("3fa85f6457174562b3fc2c963f66afa6"));
        assert!(oc_uuid_parses("*"));
        assert!(!oc_uuid_parses(""));
        assert!(!oc_uuid_parses("not-a-uuid"));
        assert!(!oc_uuid_parses("3fa85f6457174562b3fc2c963f66afa6ab"));
    }
}
