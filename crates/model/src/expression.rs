//! Model expressions, parsed once when the model is read.
//!
//! A metric's `sum`, `count`, `count_distinct` and `where`, and a computed attribute's
//! `expression`, are SQL expressions over one table's own columns. They are parsed here with the
//! SQL parser DataFusion itself uses, so that everything DataFusion accepts in an expression
//! (`BETWEEN`, `CASE`, `EXTRACT(MONTH FROM ...)`, `IN` lists, casts, date arithmetic) is
//! accepted, and a malformed one is a model error with its line instead of a failure at query
//! time. The compiler qualifies the columns by rewriting the parsed tree, never the text.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Ident, visit_expressions, visit_expressions_mut};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// A SQL expression over one table's own columns, as the model file gives it and as parsed.
#[derive(Clone, Debug)]
pub struct Expression {
    text: String,
    /// Boxed: a parsed tree is large, and metrics hold several expressions.
    tree: Box<Expr>,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.tree == other.tree
    }
}

impl Expression {
    /// Parses an expression, refusing anything that is not one expression over bare column
    /// names: trailing words, subqueries, and columns qualified by a table name (the compiler
    /// decides which table a column is read from).
    pub fn parse(text: &str) -> Result<Expression, String> {
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(text)
            .map_err(|e| format!("`{text}` is not an expression: {}", parser_message(&e)))?;
        let tree = parser
            .parse_expr()
            .map_err(|e| format!("`{text}` is not an expression: {}", parser_message(&e)))?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(format!(
                "`{text}` is not one expression: unexpected `{}` at column {}",
                next.token, next.span.start.column
            ));
        }
        let mut refused = None;
        let _ = visit_expressions(&tree, |e| {
            refused = match e {
                Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => {
                    Some("a subquery: a model expression reads one row of its own table".into())
                }
                Expr::CompoundIdentifier(parts) => Some(format!(
                    "`{}`: a model expression names its own table's columns without a table",
                    parts
                        .iter()
                        .map(|p| p.value.as_str())
                        .collect::<Vec<_>>()
                        .join(".")
                )),
                Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                    Some("`*` is only for `count: \"*\"`".into())
                }
                _ => None,
            };
            match refused {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }
        });
        match refused {
            Some(why) => Err(format!("`{text}` has {why}")),
            None => Ok(Expression {
                text: text.trim().to_string(),
                tree: Box::new(tree),
            }),
        }
    }

    /// The expression as the model file gives it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The columns it reads, as the engine will resolve them: unquoted names in lower case
    /// (DataFusion's rule), quoted ones as written.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut columns = BTreeSet::new();
        let _ = visit_expressions(self.tree.as_ref(), |e| {
            if let Expr::Identifier(id) = e {
                columns.insert(normalized(id));
            }
            ControlFlow::<()>::Continue(())
        });
        columns
    }

    /// The column, when the expression is just one column.
    pub fn column(&self) -> Option<String> {
        match self.tree.as_ref() {
            Expr::Identifier(id) => Some(normalized(id)),
            Expr::Nested(inner) => match inner.as_ref() {
                Expr::Identifier(id) => Some(normalized(id)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The expression as SQL with every column read from the table called `alias`.
    pub fn qualified(&self, alias: &str) -> String {
        self.qualified_tree(alias).to_string()
    }

    /// The parsed expression with every column read from the table called `alias`: what the
    /// compiler plans into a DataFusion expression, without parsing text again.
    pub fn qualified_tree(&self, alias: &str) -> Expr {
        let mut tree = self.tree.as_ref().clone();
        let _ = visit_expressions_mut(&mut tree, |e| {
            if let Expr::Identifier(id) = e {
                *e = Expr::CompoundIdentifier(vec![Ident::new(alias), id.clone()]);
            }
            ControlFlow::<()>::Continue(())
        });
        tree
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn normalized(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_lowercase(),
    }
}

/// The parser's message without its type name: `Expected: ), found: AS at Line: 1, Column: 9`.
fn parser_message(e: &sqlparser::parser::ParserError) -> String {
    use sqlparser::parser::ParserError;
    match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "nested too deeply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_qualified_but_keywords_strings_functions_and_date_fields_are_not() {
        let e = Expression::parse(
            "CASE WHEN annual_revenue IS NULL THEN 'unknown value' ELSE lower(region) END",
        )
        .unwrap();
        assert_eq!(
            e.qualified("customer"),
            "CASE WHEN customer.annual_revenue IS NULL THEN 'unknown value' ELSE lower(customer.region) END"
        );
        let e = Expression::parse("revenue BETWEEN 10000 AND 50000").unwrap();
        assert_eq!(e.qualified("f"), "f.revenue BETWEEN 10000 AND 50000");
        let e = Expression::parse("EXTRACT(MONTH FROM order_date) IN (3, 6, 9, 12)").unwrap();
        assert_eq!(
            e.qualified("f"),
            "EXTRACT(MONTH FROM f.order_date) IN (3, 6, 9, 12)"
        );
        assert_eq!(
            e.columns().into_iter().collect::<Vec<_>>(),
            vec!["order_date"]
        );
    }

    #[test]
    fn a_column_is_found_as_the_engine_will_resolve_it() {
        assert_eq!(
            Expression::parse("Revenue").unwrap().column().as_deref(),
            Some("revenue")
        );
        assert_eq!(
            Expression::parse("(customer_id)")
                .unwrap()
                .column()
                .as_deref(),
            Some("customer_id")
        );
        assert_eq!(Expression::parse("revenue - cost").unwrap().column(), None);
    }

    #[test]
    fn what_is_not_one_expression_over_own_columns_is_refused_with_the_reason() {
        for (text, why) in [
            ("revenue AS r", "unexpected `AS`"),
            ("revenue +", "not an expression"),
            ("CASE WHEN cost THEN 1", "unexpected `WHEN`"),
            ("orders.revenue", "`orders.revenue`"),
            ("revenue IN (SELECT 1)", "subquery"),
            ("'unterminated", "not an expression"),
        ] {
            let e = Expression::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
