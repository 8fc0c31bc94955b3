//! Integers made decimals without checking every value.
//!
//! A metric sums a difference of timestamps as `DECIMAL(38, 0)` so that its total cannot
//! overflow (`first_response_microseconds`, `resolution_microseconds`). Arrow's cast from an
//! integer to a decimal checks each value against the decimal's precision, which no 64-bit
//! integer can exceed at 38 digits: in the first response time by partner off the rollups, that
//! cast was a quarter of the CPU. [`IntegersAsDecimals`] writes such a cast, in aggregations and
//! projections, as [`IntegerAsDecimal`], which widens each value (and multiplies it by ten to
//! the scale) without a check. A cast that could overflow is left as it is, and so are filters'
//! casts, by which the scan prunes.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The logical optimiser rule that writes a cast of an integer to a decimal wide enough for
/// every value of the integer's type (`CAST(x AS DECIMAL(38, 0))` of a `BIGINT`), in
/// aggregations and projections, as [`IntegerAsDecimal`].
#[derive(Debug, Default)]
pub struct IntegersAsDecimals;

impl OptimizerRule for IntegersAsDecimals {
    fn name(&self) -> &str {
        "prism_integers_as_decimals"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        crate::texts::rewrite_aggregations_and_projections(plan, |e, schema| {
            let Expr::Cast(Cast { expr, field }) = &e else {
                return Ok(Transformed::no(e));
            };
            let data_type = field.data_type();
            if !widens(&expr.get_type(schema)?, data_type) {
                return Ok(Transformed::no(e));
            }
            let udf = ScalarUDF::new_from_impl(IntegerAsDecimal::to(data_type.clone()));
            Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(Arc::new(udf), vec![expr.as_ref().clone()]),
            )))
        })
    }
}

/// The most decimal digits a value of an integer type has; none for another type.
fn digits(integer: &DataType) -> Option<u8> {
    Some(match integer {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        DataType::UInt64 => 20,
        _ => return None,
    })
}

/// Whether every value of `from`, an integer type, fits `to`, a 128-bit decimal, at its scale.
fn widens(from: &DataType, to: &DataType) -> bool {
    match (digits(from), to) {
        (Some(digits), DataType::Decimal128(precision, scale)) => {
            *scale >= 0 && digits as i16 + *scale as i16 <= *precision as i16
        }
        _ => false,
    }
}

/// An integer as a decimal of a type every value of it fits: each value widened to 128 bits and
/// multiplied by ten to the scale, without the check of a cast.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntegerAsDecimal {
    to: DataType,
    signature: Signature,
}

impl IntegerAsDecimal {
    /// The function making integers decimals of type `to`.
    pub fn to(to: DataType) -> IntegerAsDecimal {
        IntegerAsDecimal {
            to,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn widened(&self, values: &ArrayRef) -> Result<ArrayRef> {
        let DataType::Decimal128(precision, scale) = self.to else {
            return exec_err!(
                "prism_integer_as_decimal makes 128-bit decimals, not {}",
                self.to
            );
        };
        if !widens(values.data_type(), &self.to) {
            return exec_err!(
                "prism_integer_as_decimal cannot make {} a {} without a check",
                values.data_type(),
                self.to
            );
        }
        let factor = 10i128.pow(scale as u32);
        fn widen<T: ArrowPrimitiveType>(values: &ArrayRef, factor: i128) -> Decimal128Array
        where
            T::Native: Into<i128>,
        {
            values
                .as_primitive::<T>()
                .unary(|v| Into::<i128>::into(v) * factor)
        }
        let widened = match values.data_type() {
            DataType::Int8 => widen::<Int8Type>(values, factor),
            DataType::Int16 => widen::<Int16Type>(values, factor),
            DataType::Int32 => widen::<Int32Type>(values, factor),
            DataType::Int64 => widen::<Int64Type>(values, factor),
            DataType::UInt8 => widen::<UInt8Type>(values, factor),
            DataType::UInt16 => widen::<UInt16Type>(values, factor),
            DataType::UInt32 => widen::<UInt32Type>(values, factor),
            DataType::UInt64 => widen::<UInt64Type>(values, factor),
            other => return exec_err!("prism_integer_as_decimal widens integers, not {other}"),
        };
        Ok(Arc::new(
            widened.with_precision_and_scale(precision, scale)?,
        ))
    }
}

impl ScalarUDFImpl for IntegerAsDecimal {
    fn name(&self) -> &str {
        "prism_integer_as_decimal"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.to.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [values] = args.args.as_slice() else {
            return exec_err!("prism_integer_as_decimal takes one argument");
        };
        match values {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(self.widened(a)?)),
            ColumnarValue::Scalar(s) => {
                let widened = self.widened(&s.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &widened, 0,
                )?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, RecordBatch, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn session(rule: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if rule {
            state = state.with_optimizer_rule(Arc::new(IntegersAsDecimals));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let schema = Arc::new(Schema::new(vec![
            Field::new("partner_id", DataType::Utf8, false),
            Field::new("opened", DataType::Int64, true),
            Field::new("responded", DataType::Int64, true),
            Field::new("units", DataType::Int32, true),
            Field::new("big", DataType::UInt64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(arrow::array::StringArray::from(vec![
                    "P-1", "P-2", "P-1", "P-2",
                ])),
                Arc::new(Int64Array::from(vec![
                    Some(i64::MIN),
                    Some(-5),
                    Some(1_000),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![
                    Some(i64::MAX),
                    Some(7),
                    Some(4_600),
                    Some(3),
                ])),
                Arc::new(Int32Array::from(vec![
                    Some(i32::MIN),
                    None,
                    Some(12),
                    Some(-3),
                ])),
                Arc::new(UInt64Array::from(vec![
                    Some(u64::MAX),
                    Some(1),
                    None,
                    Some(2),
                ])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("requests", Arc::new(table)).unwrap();
        ctx
    }

    async fn answer(rule: bool, sql: &str) -> (String, String) {
        let frame = session(rule).sql(sql).await.unwrap();
        let plan = format!(
            "{}",
            frame
                .clone()
                .into_optimized_plan()
                .unwrap()
                .display_indent()
        );
        let rows = frame.collect().await.unwrap();
        (pretty_format_batches(&rows).unwrap().to_string(), plan)
    }

    #[tokio::test]
    async fn integers_made_decimals_without_a_check_answer_as_a_cast_does() {
        // The extremes of each type, nulls, a scale above zero, sums and a projection.
        let sql = "SELECT partner_id, \
                   SUM(CAST(responded AS DECIMAL(38, 0)) - CAST(opened AS DECIMAL(38, 0))), \
                   SUM(CAST(responded - opened AS DECIMAL(38, 0))) FILTER (WHERE opened > 0), \
                   SUM(CAST(units AS DECIMAL(20, 3))), MIN(CAST(big AS DECIMAL(38, 2))), \
                   MAX(CAST(big AS DECIMAL(20, 0))) \
                   FROM requests GROUP BY partner_id ORDER BY partner_id";
        let (cast, _) = answer(false, sql).await;
        let (widened, plan) = answer(true, sql).await;
        assert!(plan.contains("prism_integer_as_decimal"), "{plan}");
        assert_eq!(widened, cast);
        // Worked by hand for P-1: units i32::MIN + 12 at scale 3.
        assert!(
            widened.contains(&format!("{}.000", i32::MIN as i64 + 12)),
            "{widened}"
        );
        let projected = "SELECT CAST(units AS DECIMAL(12, 2)) AS u FROM requests ORDER BY u";
        let (cast, _) = answer(false, projected).await;
        let (widened, plan) = answer(true, projected).await;
        assert!(plan.contains("prism_integer_as_decimal"), "{plan}");
        assert_eq!(widened, cast);
    }

    #[tokio::test]
    async fn a_cast_that_could_overflow_or_that_filters_is_left_as_it_is() {
        for sql in [
            // 19 digits of a BIGINT at scale 1 need 20.
            "SELECT SUM(CAST(opened AS DECIMAL(19, 1))) FROM requests",
            // A UInt64 has 20 digits.
            "SELECT SUM(CAST(big AS DECIMAL(19, 0))) FROM requests",
            // Not an integer.
            "SELECT SUM(CAST(partner_id AS DECIMAL(38, 0))) FROM requests",
            // A filter's cast, by which a scan prunes.
            "SELECT COUNT(*) FROM requests WHERE CAST(units AS DECIMAL(38, 0)) + 1 > 5",
        ] {
            let frame = session(true).sql(sql).await.unwrap();
            let plan = format!("{}", frame.into_optimized_plan().unwrap().display_indent());
            assert!(!plan.contains("prism_integer_as_decimal"), "{sql}\n{plan}");
            assert!(plan.contains("CAST("), "{sql}\n{plan}");
        }
    }
}
