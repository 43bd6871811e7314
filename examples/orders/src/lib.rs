//! Example task: price an order.
//!
//! Shows records, lists, options, enums, variants and `result<_, error>` crossing the task
//! boundary, exported from an interface (`pricing`), so the tasks are `orders/pricing.quote` and
//! `orders/pricing.check-coupon`.

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-examples:orders/orders",
    path: ["../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

use exports::hypergraph_examples::orders::pricing::{
    Discount, Guest, LineItem, Order, PriceQuote, Priority, QuoteError,
};

/// Orders with more units than this are refused.
const MAX_UNITS: u64 = 10_000;
/// Standard shipping is free from this subtotal on.
const FREE_SHIPPING_FROM_CENTS: u64 = 5_000;

struct Pricing;

impl Guest for Pricing {
    fn quote(order: Order) -> Result<PriceQuote, QuoteError> {
        let quote = price(&order);
        match &quote {
            Ok(q) => hypergraph_guest::info!(
                "quoted {} units for {}: total {} cents",
                q.units,
                q.customer,
                q.total_cents
            ),
            Err(e) => hypergraph_guest::warn!("cannot quote order of {}: {e:?}", order.customer),
        }
        quote
    }

    fn check_coupon(code: String) -> Option<Discount> {
        coupon(&code)
    }
}

fn coupon(code: &str) -> Option<Discount> {
    match code.trim().to_ascii_uppercase().as_str() {
        "WELCOME10" => Some(Discount::Percent(10)),
        "HALFOFF" => Some(Discount::Percent(50)),
        "FLAT5" => Some(Discount::FixedCents(500)),
        "FREESHIP" => Some(Discount::FreeShipping),
        _ => None,
    }
}

fn price(order: &Order) -> Result<PriceQuote, QuoteError> {
    if order.items.is_empty() {
        return Err(QuoteError::EmptyOrder);
    }
    if let Some(LineItem { sku, .. }) = order.items.iter().find(|item| item.quantity == 0) {
        return Err(QuoteError::ZeroQuantity(sku.clone()));
    }
    let units: u64 = order.items.iter().map(|i| u64::from(i.quantity)).sum();
    if units > MAX_UNITS {
        return Err(QuoteError::TooManyUnits(units));
    }
    let discount = match &order.coupon {
        Some(code) => Some(coupon(code).ok_or_else(|| QuoteError::UnknownCoupon(code.clone()))?),
        None => None,
    };
    // At most 10000 units, so only absurd unit prices can overflow: saturate rather than trap.
    let subtotal = order.items.iter().fold(0u64, |sum, item| {
        sum.saturating_add(
            item.unit_price_cents
                .saturating_mul(u64::from(item.quantity)),
        )
    });
    let mut shipping = match order.priority {
        Priority::Standard if subtotal >= FREE_SHIPPING_FROM_CENTS => 0,
        Priority::Standard => 499,
        Priority::Express => 1_299,
        Priority::Overnight => 2_999,
    };
    let discount_cents = match discount {
        Some(Discount::Percent(p)) => {
            subtotal / 100 * u64::from(p) + subtotal % 100 * u64::from(p) / 100
        }
        Some(Discount::FixedCents(c)) => c.min(subtotal),
        Some(Discount::FreeShipping) => {
            shipping = 0;
            0
        }
        None => 0,
    };
    Ok(PriceQuote {
        customer: order.customer.clone(),
        subtotal_cents: subtotal,
        discount,
        discount_cents,
        shipping_cents: shipping,
        total_cents: subtotal - discount_cents + shipping,
        units: units as u32,
    })
}

export!(Pricing);
