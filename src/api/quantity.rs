//! Parsing of Kubernetes resource quantities (`"4Gi"`, `"50G"`, `"500m"`), as far as the operator
//! needs numbers from them: bytes of memory and disk.

/// Bytes in a quantity such as `"512Mi"`, `"50G"`, `"1e9"` or `"1073741824"`.
/// Fractions are rounded up to a whole byte.
pub fn parse_bytes(quantity: &str) -> Result<u64, String> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() || number.starts_with('-') {
        return Err(format!("{quantity:?} is not a positive quantity"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{quantity:?} is not a quantity"))?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        "m" => 1e-3,
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..]
                .parse()
                .map_err(|_| format!("{quantity:?} has a bad exponent"))?;
            10f64.powi(exp)
        }
        _ => {
            return Err(format!(
                "{quantity:?} has an unknown unit {suffix:?}; use one of Ki, Mi, Gi, Ti, k, M, G, T"
            ));
        }
    };
    Ok((value * factor).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(parse_bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("50G").unwrap(), 50_000_000_000);
        assert_eq!(parse_bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1e9").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("123").unwrap(), 123);
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("1Gb").is_err());
        assert!(parse_bytes("-1Gi").is_err());
        assert!(parse_bytes("").is_err());
    }
}
