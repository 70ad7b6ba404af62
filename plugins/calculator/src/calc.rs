//! Exact decimal arithmetic on expressions: `+ - * /`, `^` (or `**`) with whole exponents,
//! parentheses, unary minus and plus, decimal literals of any length. Never floating point:
//! every number is an integer over a power of ten. Sums, differences, products and powers
//! with positive exponents are exact; a quotient (and a negative power) is exact when it has at
//! most [`MAX_SCALE`] decimal places, else rounded there (half away from zero) and the result
//! says so. The work is bounded: the expression's length, every number's digits, the nesting
//! depth and the total work ([`Limits`]); past a limit the error names it.

use std::cmp::Ordering;

use crate::big::Big;

/// Decimal places of a quotient that is not exact.
pub const MAX_SCALE: usize = 32;

/// Bounds on the work of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Characters of the expression.
    pub max_len: usize,
    /// Digits of any number (a literal or an intermediate result), counting the integer
    /// digits and the decimal places.
    pub max_digits: usize,
    /// Nesting of parentheses and unary signs.
    pub max_depth: usize,
    /// Limb operations (one limb is nine digits) of the whole evaluation.
    pub max_work: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 100_000,
            max_digits: 10_000,
            max_depth: 64,
            max_work: 50_000_000,
        }
    }
}

/// The value of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exact value, or the value rounded to [`MAX_SCALE`] places when `rounded`.
    pub value: String,
    /// Whether some division (or negative power) was rounded.
    pub rounded: bool,
}

/// A decimal: `(-1)^neg * mag / 10^scale`, normalized (no trailing zero decimal places; zero
/// is never negative and has scale 0).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dec {
    neg: bool,
    mag: Big,
    scale: usize,
}

impl Dec {
    fn new(neg: bool, mut mag: Big, mut scale: usize) -> Dec {
        while scale > 0 && !mag.is_zero() {
            let (q, r) = mag.div10();
            if r != 0 {
                break;
            }
            mag = q;
            scale -= 1;
        }
        if mag.is_zero() {
            return Dec {
                neg: false,
                mag,
                scale: 0,
            };
        }
        Dec { neg, mag, scale }
    }

    fn one() -> Dec {
        Dec::new(false, Big::from_u64(1), 0)
    }

    /// Digits it takes to write: the integer digits and the decimal places.
    fn width(&self) -> usize {
        self.mag.digit_count().max(self.scale + 1)
    }

    fn to_text(&self) -> String {
        let digits = self.mag.to_digits();
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        if self.scale == 0 {
            s.push_str(&digits);
        } else if digits.len() > self.scale {
            let (int, frac) = digits.split_at(digits.len() - self.scale);
            s.push_str(int);
            s.push('.');
            s.push_str(frac);
        } else {
            s.push_str("0.");
            s.push_str(&"0".repeat(self.scale - digits.len()));
            s.push_str(&digits);
        }
        s
    }
}

/// An error: what was wrong, and where (a 1-based character position) when it has a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalcError(pub String);

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Dec),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Open,
    Close,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(d) => format!("the number {}", short(&d.to_text())),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Star => "'*'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Caret => "'^'".into(),
            Tok::Open => "'('".into(),
            Tok::Close => "')'".into(),
            Tok::End => "the end of the expression".into(),
        }
    }
}

fn short(s: &str) -> String {
    if s.len() <= 24 {
        s.to_string()
    } else {
        format!("{}…({} characters)", s.get(..16).unwrap_or(s), s.len())
    }
}

/// The tokens of `text`, each with its 1-based character position.
fn lex(text: &str, limits: &Limits) -> Result<Vec<(Tok, usize)>, CalcError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > limits.max_len {
        return Err(CalcError(format!(
            "the expression has {} characters; at most {} are accepted",
            chars.len(),
            limits.max_len
        )));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '+' => Tok::Plus,
            '-' | '\u{2212}' => Tok::Minus,
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                Tok::Caret
            }
            '*' | '\u{00d7}' => Tok::Star,
            '/' | '\u{00f7}' => Tok::Slash,
            '^' => Tok::Caret,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '0'..='9' | '.' => {
                let start = i;
                let mut int = Vec::new();
                let mut frac = Vec::new();
                let mut dot = false;
                while let Some(&d) = chars.get(i) {
                    match d {
                        '0'..='9' if dot => frac.push(d as u8),
                        '0'..='9' => int.push(d as u8),
                        '.' if !dot => dot = true,
                        '.' => {
                            return Err(CalcError(format!(
                                "a second '.' in the number at position {pos} (at position {}): \
                                 a number is digits with at most one decimal point, e.g. 12.5",
                                i + 1
                            )));
                        }
                        '_' | ',' if !dot && chars.get(i + 1).is_some_and(char::is_ascii_digit) => {
                            return Err(CalcError(format!(
                                "'{d}' at position {}: write numbers without digit separators, \
                                 e.g. 1234567.5",
                                i + 1
                            )));
                        }
                        _ => break,
                    }
                    i += 1;
                }
                if int.is_empty() && frac.is_empty() {
                    return Err(CalcError(format!(
                        "'.' at position {pos} is not a number: expected digits around it, e.g. 0.5"
                    )));
                }
                let n = int.len() + frac.len();
                if n > limits.max_digits {
                    return Err(CalcError(format!(
                        "the number at position {pos} has {n} digits; at most {} are accepted",
                        limits.max_digits
                    )));
                }
                let scale = frac.len();
                int.extend_from_slice(&frac);
                if int.is_empty() {
                    int.push(b'0');
                }
                debug_assert!(i > start);
                out.push((
                    Tok::Num(Dec::new(false, Big::from_digits(&int), scale)),
                    pos,
                ));
                continue;
            }
            other => {
                let hint = if other.is_alphabetic() {
                    " (only numbers and + - * / ^ ( ) are accepted: no variables, functions or \
                     units)"
                } else {
                    ""
                };
                return Err(CalcError(format!(
                    "unexpected character {other:?} at position {pos}: expected a number, an \
                     operator (+ - * / ^) or a parenthesis{hint}"
                )));
            }
        };
        out.push((tok, pos));
        i += 1;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Eval<'a> {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
    work: u64,
    rounded: bool,
    limits: &'a Limits,
}

impl Eval<'_> {
    fn peek(&self) -> &(Tok, usize) {
        // `lex` always ends with `End`, and nothing moves past it.
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if t.0 != Tok::End {
            self.at += 1;
        }
        t
    }

    fn charge(&mut self, cost: usize) -> Result<(), CalcError> {
        self.work = self.work.saturating_add(cost as u64);
        if self.work > self.limits.max_work {
            return Err(CalcError(format!(
                "the expression needs too much work (more than {} operations on 9-digit \
                 limbs): use smaller numbers or exponents",
                self.limits.max_work
            )));
        }
        Ok(())
    }

    fn check(&self, d: Dec, pos: usize, what: &str) -> Result<Dec, CalcError> {
        let w = d.width();
        if w > self.limits.max_digits {
            return Err(CalcError(format!(
                "the {what} at position {pos} has {w} digits; at most {} are accepted",
                self.limits.max_digits
            )));
        }
        Ok(d)
    }

    fn enter(&mut self, pos: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(CalcError(format!(
                "too deeply nested at position {pos}: at most {} levels of parentheses and signs",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Dec, CalcError> {
        let mut acc = self.term()?;
        loop {
            let (op, pos) = self.peek().clone();
            let neg = match op {
                Tok::Plus => false,
                Tok::Minus => true,
                _ => return Ok(acc),
            };
            self.next();
            let rhs = self.term()?;
            let sum = self.add(&acc, &rhs, neg)?;
            acc = self.check(sum, pos, if neg { "difference" } else { "sum" })?;
        }
    }

    fn term(&mut self) -> Result<Dec, CalcError> {
        let mut acc = self.unary()?;
        loop {
            let (op, pos) = self.peek().clone();
            match op {
                Tok::Star => {
                    self.next();
                    let rhs = self.unary()?;
                    let p = self.mul(&acc, &rhs)?;
                    acc = self.check(p, pos, "product")?;
                }
                Tok::Slash => {
                    self.next();
                    let rhs = self.unary()?;
                    let q = self.div(&acc, &rhs, pos)?;
                    acc = self.check(q, pos, "quotient")?;
                }
                _ => return Ok(acc),
            }
        }
    }

    fn unary(&mut self) -> Result<Dec, CalcError> {
        let (op, pos) = self.peek().clone();
        match op {
            Tok::Minus | Tok::Plus => {
                self.next();
                self.enter(pos)?;
                let mut v = self.unary()?;
                self.depth -= 1;
                if op == Tok::Minus && !v.mag.is_zero() {
                    v.neg = !v.neg;
                }
                Ok(v)
            }
            _ => self.power(),
        }
    }

    /// `primary ('^' unary)?`: right-associative, binds tighter than a sign on its left
    /// (`-2^2` is -4) and takes a signed exponent (`2^-3`).
    fn power(&mut self) -> Result<Dec, CalcError> {
        let base = self.primary()?;
        let (op, pos) = self.peek().clone();
        if op != Tok::Caret {
            return Ok(base);
        }
        self.next();
        self.enter(pos)?;
        let exp = self.unary()?;
        self.depth -= 1;
        let p = self.pow(&base, &exp, pos)?;
        self.check(p, pos, "power")
    }

    fn primary(&mut self) -> Result<Dec, CalcError> {
        let (tok, pos) = self.next();
        match tok {
            Tok::Num(d) => Ok(d),
            Tok::Open => {
                self.enter(pos)?;
                let v = self.expr()?;
                self.depth -= 1;
                let (close, at) = self.next();
                if close != Tok::Close {
                    return Err(CalcError(format!(
                        "expected ')' at position {at} to close the '(' at position {pos}, found {}",
                        close.describe()
                    )));
                }
                Ok(v)
            }
            other => Err(CalcError(format!(
                "expected a number or '(' at position {pos}, found {}",
                other.describe()
            ))),
        }
    }

    /// `a + b`, or `a - b` when `negate_b`.
    fn add(&mut self, a: &Dec, b: &Dec, negate_b: bool) -> Result<Dec, CalcError> {
        let scale = a.scale.max(b.scale);
        let am = a.mag.shl10(scale - a.scale);
        let bm = b.mag.shl10(scale - b.scale);
        self.charge(am.limbs().max(bm.limbs()) + 1)?;
        let bneg = b.neg != negate_b;
        if a.neg == bneg {
            return Ok(Dec::new(a.neg, am.add(&bm), scale));
        }
        Ok(match am.cmp(&bm) {
            Ordering::Less => Dec::new(bneg, bm.sub(&am), scale),
            _ => Dec::new(a.neg, am.sub(&bm), scale),
        })
    }

    fn mul(&mut self, a: &Dec, b: &Dec) -> Result<Dec, CalcError> {
        self.charge(a.mag.limbs().saturating_mul(b.mag.limbs()) + 1)?;
        Ok(Dec::new(
            a.neg != b.neg,
            a.mag.mul(&b.mag),
            a.scale + b.scale,
        ))
    }

    fn div(&mut self, a: &Dec, b: &Dec, pos: usize) -> Result<Dec, CalcError> {
        if b.mag.is_zero() {
            return Err(CalcError(format!("division by zero at position {pos}")));
        }
        // a / b = (A / 10^sa) / (B / 10^sb) = A * 10^sb / (B * 10^sa); MAX_SCALE places.
        let n = a.mag.shl10(b.scale + MAX_SCALE);
        let d = b.mag.shl10(a.scale);
        let qdigits = n.digit_count().saturating_sub(d.digit_count()) + 2;
        self.charge(qdigits.saturating_mul(10).saturating_mul(d.limbs() + 1))?;
        let (mut q, r) = n.divrem(&d);
        if !r.is_zero() {
            self.rounded = true;
            if r.add(&r) >= d {
                q = q.add(&Big::from_u64(1));
            }
        }
        Ok(Dec::new(a.neg != b.neg, q, MAX_SCALE))
    }

    fn pow(&mut self, base: &Dec, exp: &Dec, pos: usize) -> Result<Dec, CalcError> {
        if exp.scale != 0 {
            return Err(CalcError(format!(
                "the exponent at position {pos} is {}: only whole exponents are accepted \
                 (no roots)",
                short(&exp.to_text())
            )));
        }
        let too_big = || {
            CalcError(format!(
                "the power at position {pos} would have more than {} digits: use a smaller \
                 exponent",
                self.limits.max_digits
            ))
        };
        let e = exp.mag.to_digits();
        let e: u64 = if exp.mag.digit_count() > 12 {
            u64::MAX
        } else {
            e.parse().unwrap_or(u64::MAX)
        };
        if base.mag.is_zero() {
            return match (e, exp.neg) {
                (0, _) => Ok(Dec::one()),
                (_, true) => Err(CalcError(format!(
                    "division by zero at position {pos}: 0 to a negative power"
                ))),
                _ => Ok(base.clone()),
            };
        }
        let neg = base.neg && e % 2 == 1;
        let one = Dec::one();
        if base.mag == Big::from_u64(1) && base.scale == 0 {
            return Ok(Dec::new(neg, one.mag, 0));
        }
        // An estimate of the result's width (the exact one is checked after): the integer
        // digits of mag^e, and the decimal places scale * e.
        let digits = (e as f64) * log10(&base.mag);
        let places = (e as f64) * (base.scale as f64);
        if digits.max(places) > self.limits.max_digits as f64 + 1.0 {
            return Err(too_big());
        }
        let mut result = one.clone();
        let mut square = base.clone();
        let mut k = e;
        while k > 0 {
            if k & 1 == 1 {
                result = self.mul(&result, &square)?;
            }
            k >>= 1;
            if k > 0 {
                square = self.mul(&square, &square)?;
            }
        }
        result.neg = neg && !result.mag.is_zero();
        if exp.neg {
            result = self.div(&one, &result, pos)?;
        }
        Ok(result)
    }
}

/// About log10(m) for m > 0, from its digit count and leading digits (for limit estimates).
fn log10(m: &Big) -> f64 {
    let digits = m.to_digits();
    let lead: f64 = digits.get(..15).unwrap_or(&digits).parse().unwrap_or(1.0);
    let lead_len = digits.len().min(15);
    (digits.len() - lead_len) as f64 + lead.log10()
}

/// Evaluates `expression` under `limits`.
pub fn evaluate(expression: &str, limits: &Limits) -> Result<Outcome, CalcError> {
    let toks = lex(expression, limits)?;
    if toks.len() == 1 {
        return Err(CalcError(
            "the expression is empty: expected numbers and operators, e.g. (2 + 3) * 4".into(),
        ));
    }
    let mut ev = Eval {
        toks,
        at: 0,
        depth: 0,
        work: 0,
        rounded: false,
        limits,
    };
    let value = ev.expr()?;
    let (tok, pos) = ev.next();
    if tok != Tok::End {
        let what = match tok {
            Tok::Close => "')' without a matching '('".to_string(),
            Tok::Num(_) | Tok::Open => {
                format!("{} (an operator is missing before it)", tok.describe())
            }
            other => other.describe(),
        };
        return Err(CalcError(format!(
            "unexpected {what} at position {pos}: expected an operator (+ - * / ^) or the end"
        )));
    }
    Ok(Outcome {
        value: value.to_text(),
        rounded: ev.rounded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> String {
        match evaluate(s, &Limits::default()) {
            Ok(o) => {
                assert!(!o.rounded, "{s} was rounded");
                o.value
            }
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn rounded(s: &str) -> String {
        let o = evaluate(s, &Limits::default()).unwrap();
        assert!(o.rounded, "{s} was exact");
        o.value
    }

    fn err(s: &str) -> String {
        match evaluate(s, &Limits::default()) {
            Ok(o) => panic!("{s} = {o:?}, expected an error"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        assert_eq!(eval("0.1 + 0.2"), "0.3");
        assert_eq!(eval("1 - 0.9"), "0.1");
        assert_eq!(eval("0.1 * 3"), "0.3");
        assert_eq!(eval("1.10 * 2"), "2.2");
        assert_eq!(eval("2.5 - 2.5"), "0");
        assert_eq!(eval("-2.5 + 2.5"), "0");
        assert_eq!(eval("1 / 8"), "0.125");
        assert_eq!(eval("10 / 4"), "2.5");
        assert_eq!(eval("7 / 0.25"), "28");
        assert_eq!(eval("0.000001 * 0.000001"), "0.000000000001");
        assert_eq!(eval(".5 + 5."), "5.5");
        assert_eq!(eval("3 - 5"), "-2");
        assert_eq!(eval("-0.5 * 0"), "0");
    }

    #[test]
    fn precedence_associativity_and_signs() {
        assert_eq!(eval("2 + 3 * 4"), "14");
        assert_eq!(eval("(2 + 3) * 4"), "20");
        assert_eq!(eval("10 - 4 - 3"), "3");
        assert_eq!(eval("100 / 10 / 5"), "2");
        assert_eq!(eval("2 ^ 3 ^ 2"), "512");
        assert_eq!(eval("2 ** 10"), "1024");
        assert_eq!(eval("-2 ^ 2"), "-4");
        assert_eq!(eval("(-2) ^ 3"), "-8");
        assert_eq!(eval("(-2) ^ 2"), "4");
        assert_eq!(eval("2 ^ -2"), "0.25");
        assert_eq!(eval("--3"), "3");
        assert_eq!(eval("+3 - -3"), "6");
        assert_eq!(eval("2 * -3"), "-6");
        assert_eq!(eval("0 ^ 0"), "1");
        assert_eq!(eval("1 ^ 1000000000000"), "1");
        assert_eq!(eval("(-1) ^ 1000000000001"), "-1");
        assert_eq!(eval("1.5 ^ 2"), "2.25");
        assert_eq!(eval("0.1 ^ 3"), "0.001");
        assert_eq!(eval("12 × 3 ÷ 4 − 1"), "8");
        assert_eq!(eval("  ( ( 1 ) )  "), "1");
    }

    #[test]
    fn big_numbers_stay_exact() {
        assert_eq!(
            eval("99999999999999999999999999999999 + 1"),
            format!("1{}", "0".repeat(32))
        );
        assert_eq!(
            eval("123456789012345678901234567890 * 987654321098765432109876543210"),
            "121932631137021795226185032733622923332237463801111263526900"
        );
        assert_eq!(eval("2 ^ 128"), "340282366920938463463374607431768211456");
        assert_eq!(eval("2 ^ 128 - 2 ^ 128 + 0.5"), "0.5");
        let f = eval("2 ^ 1000");
        assert_eq!(f.len(), 302);
        assert!(f.starts_with("10715086071862673209484250490600018105614048117055336074437503883703510511249361224931983788156958581275946729175531468251871452856923140435984577574698574803934567774824230985421074605062371141877954182153046474983581941267398767559165543946077062914571196477686542167660429831652624386837205668069376"));
        assert_eq!(eval("(2 ^ 1000) / (2 ^ 998)"), "4");
        let long = format!("0.{}1", "0".repeat(500));
        assert_eq!(eval(&format!("{long} * 10 ^ 501")), "1");
    }

    #[test]
    fn division_rounds_to_32_places_half_away_from_zero() {
        assert_eq!(rounded("1 / 3"), format!("0.{}", "3".repeat(32)));
        assert_eq!(rounded("2 / 3"), format!("0.{}7", "6".repeat(31)));
        assert_eq!(rounded("-2 / 3"), format!("-0.{}7", "6".repeat(31)));
        assert_eq!(rounded("1 / 7"), "0.14285714285714285714285714285714");
        assert_eq!(
            rounded("10 ^ 40 / 3"),
            format!("{}.{}", "3".repeat(40), "3".repeat(32))
        );
        assert_eq!(rounded("3 ^ -1"), format!("0.{}", "3".repeat(32)));
        assert_eq!(rounded("1 / 3 * 3"), format!("0.{}", "9".repeat(32)));
        // Below the last place: rounds to zero, and says so.
        assert_eq!(rounded("1 / 10 ^ 40"), "0");
        assert_eq!(eval("1 / 2 ^ 32"), "0.00000000023283064365386962890625");
    }

    #[test]
    fn errors_name_the_position_and_what_was_expected() {
        assert_eq!(
            err("2 +"),
            "expected a number or '(' at position 4, found the end of the expression"
        );
        assert_eq!(
            err("2 + * 3"),
            "expected a number or '(' at position 5, found '*'"
        );
        assert_eq!(
            err("(1 + 2"),
            "expected ')' at position 7 to close the '(' at position 1, found the end of the expression"
        );
        assert_eq!(
            err("1 + 2)"),
            "unexpected ')' without a matching '(' at position 6: expected an operator (+ - * / ^) or the end"
        );
        assert_eq!(
            err("2 3"),
            "unexpected the number 3 (an operator is missing before it) at position 3: expected an operator (+ - * / ^) or the end"
        );
        assert!(
            err("2 + x").starts_with("unexpected character 'x' at position 5: expected a number"),
            "{}",
            err("2 + x")
        );
        assert!(err("sqrt(2)").contains("no variables, functions or units"));
        assert!(err("1.2.3").contains("a second '.'"));
        assert!(err("1,000 + 1").contains("digit separators"));
        assert!(err(" . ").starts_with("'.' at position 2 is not a number"));
        assert_eq!(err("1 / (2 - 2)"), "division by zero at position 3");
        assert_eq!(
            err("0 ^ -1"),
            "division by zero at position 3: 0 to a negative power"
        );
        assert!(err("2 ^ 0.5").contains("only whole exponents"));
        assert!(err("").starts_with("the expression is empty"));
        assert!(err("   ").starts_with("the expression is empty"));
    }

    #[test]
    fn limits_bound_the_work() {
        let l = Limits::default();
        assert!(err("9 ^ 99999999999999999999").contains("more than 10000 digits"));
        assert!(err("2 ^ 40000").contains("more than 10000 digits"));
        assert!(
            err("(10 ^ 9000) * (10 ^ 9000)")
                .contains("the product at position 13 has 18001 digits")
        );
        assert!(err(&"9".repeat(10_001)).contains("has 10001 digits"));
        assert!(
            err(&format!("{}1{}", "(".repeat(100), ")".repeat(100))).contains("too deeply nested")
        );
        assert!(err(&format!("{}1", "-".repeat(100))).contains("too deeply nested"));
        assert!(err(&"1+".repeat(50_001)).contains("characters; at most 100000"));
        // Many big multiplications: each allowed, together too much work.
        let many = vec!["(7 ^ 5000 * 3 ^ 6000)"; 400].join(" - ");
        assert!(many.len() < l.max_len);
        let e = err(&many);
        assert!(e.contains("too much work"), "{e}");
        // The near-limit power is fine and quick.
        let t = std::time::Instant::now();
        assert_eq!(eval("2 ^ 33000").len(), 9934);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        let _ = l;
    }
}
