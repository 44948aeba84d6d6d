"""A customer-support preference data set, written from parts (no downloads), for reward models and DPO.

``support-preference`` — a customer asks the support desk of "Brightleaf", a made-up maker of app-connected
home gadgets, one question; ``chosen`` is a helpful, correct, specific and polite answer and ``rejected`` a bad
one. Columns: ``prompt`` (``[user message]``), ``chosen`` and ``rejected`` (``[assistant message]``): TRL's
conversational preference format with an explicit prompt.
``support-sft`` — the same prompts with the chosen answer as ``completion``, for an SFT stage before DPO.

Every question is one *scenario* (an intent such as "cancel my order" or "the app keeps crashing", across
orders, returns, billing, accounts, product use, subscriptions, technical problems and complaints) asked about
one *product*. Answers are "correct" against one fixed, made-up store policy (``POLICY``): 30-day free returns,
refunds 5-7 business days after we receive the item, and so on. Rejected answers come in six styles
(``STYLES``): wrong information in a polite tone, evasive non-answers, rude brush-offs, answers to a different
question, vague hand-waving, and the correct answer delivered rudely. Polite openers and closers are shared by
chosen and wrong answers, and both sides have short and long forms, so neither tone words nor length give the
label away: a reward model has to read the content and the manner.

Splits: ``train`` and ``test``. For every scenario, two products are held out, so no (scenario, product)
combination of the test split appears in train (but every scenario is seen in training with other products).
Everything is drawn from fixed seeds: the same name always gives the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SEED = 2024
TEST_PRODUCTS_PER_SCENARIO = 2
STYLES = ("wrong", "evasive", "rude", "off_topic", "vague", "correct_but_rude")
# The facts every chosen answer agrees with and every "wrong" answer contradicts (for readers and tests).
POLICY = {
    "shipping": "ships within 1 business day; standard 3-5 business days, free over $50; express 1-2 business days, $12.95",
    "returns": "30 days from delivery, used or not, free return label; no restocking fee",
    "refunds": "to the original payment method, 5-7 business days after the return arrives",
    "price_adjustment": "within 14 days of purchase",
    "password_link": "valid for 30 minutes",
    "lockout": "15 minutes after 5 failed sign-ins",
    "plus": "Brightleaf Plus: $4.99/month or $49/year, 30-day free trial, pause up to 3 months, annual refundable within 14 days",
    "wifi": "devices use 2.4 GHz Wi-Fi",
}


@dataclass(frozen=True)
class Product:
    name: str
    short: str
    warranty: int  # years
    price: int
    button: str  # what to press and hold, e.g. "the Brew button"
    battery: bool
    care: str


@dataclass(frozen=True)
class Scenario:
    key: str
    topic: str
    about: str  # a noun phrase, for answers that only talk *about* the question
    questions: tuple[str, ...]
    chosen: tuple[str, str]  # (short, long) correct answers
    wrong: tuple[str, ...]  # polite but factually wrong answers


# fmt: off
PRODUCTS = (
    Product("AeroBrew coffee maker", "AeroBrew", 2, 129, "the Brew button", False, "run the Clean cycle with descaling solution once a month and rinse the carafe daily"),
    Product("Lumen desk lamp", "Lumen", 2, 59, "the touch pad on the base", False, "wipe the shade and the base with a dry microfibre cloth; no other upkeep is needed"),
    Product("PulseFit fitness tracker", "PulseFit", 1, 79, "the side button", True, "rinse the band with fresh water after workouts and let it dry before charging"),
    Product("Echoline wireless headset", "Echoline", 1, 99, "the power button on the left ear cup", True, "wipe the ear cushions with a dry cloth and keep the charging port free of dust"),
    Product("Nimbus air purifier", "Nimbus", 2, 199, "the Power button", False, "vacuum the pre-filter once a month and replace the main filter every 6 months"),
    Product("Drift robot vacuum", "Drift", 2, 299, "the Home button", True, "empty the bin after each run, clean the brush roll weekly and wipe the cliff sensors monthly"),
    Product("Vista video doorbell", "Vista", 2, 149, "the orange setup button on the back", True, "wipe the camera lens with a soft dry cloth; avoid glass cleaner on the lens"),
    Product("Ember smart thermostat", "Ember", 2, 169, "the dial (press it in)", False, "dust the display with a dry cloth; the Ember needs no other maintenance"),
    Product("Tidal electric toothbrush", "Tidal", 1, 69, "the power button", True, "rinse the head after each use and replace it every 3 months"),
    Product("Orbit smart speaker", "Orbit", 2, 89, "the Action button", False, "dust the fabric with a soft brush; keep it away from direct heat"),
    Product("Halo baby monitor", "Halo", 1, 139, "the pairing button on the camera's base", False, "wipe the camera and the parent unit with a dry cloth"),
)

SCENARIOS = (
    # --- orders and shipping ---
    Scenario("where_order", "orders", "the status of order {order}",
             ("Where is my order {order}? I bought the {product} {days} days ago and haven't seen it yet.",
              "My {product} (order {order}) still hasn't arrived. How can I find out where it is?"),
             ("Orders ship within 1 business day and standard delivery takes 3-5 business days. You can follow order {order} under Account > Orders > Track package.",
              "We ship within 1 business day, and standard delivery then takes 3-5 business days, so your {short} should be on its way. Open Account > Orders > {order} > Track package to see exactly where it is; the same tracking link was emailed to you when it shipped. If the tracking hasn't changed for 3 business days, reply here and we'll open a trace with the carrier."),
             ("Standard delivery takes 4-6 weeks, so there's no point checking yet. We don't provide tracking for standard orders.",
              "Orders like {order} are shipped in monthly batches, so your {short} will leave our warehouse at the start of next month. Tracking only appears once it's out for delivery.")),
    Scenario("change_address", "orders", "the shipping address on order {order}",
             ("Can I change the delivery address on order {order}? I just moved.",
              "I typed the wrong address for my {product}. Is it too late to fix it?"),
             ("Yes, as long as it hasn't shipped: go to Account > Orders > {order} > Edit address. Once your {short} has shipped, use the carrier's tracking page to request a redirect.",
              "You can change it yourself until the order ships. Open Account > Orders > {order} and choose Edit address; the new address is confirmed by email. We ship within 1 business day, so do it soon. If your {short} has already shipped, the carrier's tracking page has a Redirect option, or refuse the parcel and we'll reship it to the right address at no cost once it comes back."),
             ("Addresses can't be changed once an order is placed. You'll have to wait until the {short} is returned to us and then order it again.",
              "Address changes are only possible by phone, and there is a $15 fee per change.")),
    Scenario("cancel_order", "orders", "cancelling order {order}",
             ("How do I cancel order {order}? I don't need the {product} anymore.",
              "I ordered the {product} by mistake. Can I cancel it?"),
             ("If it hasn't shipped, cancel it under Account > Orders > {order} > Cancel order; the refund reaches your card in 5-7 business days. If it has shipped, return the {short} free within 30 days.",
              "No problem. If order {order} hasn't shipped yet, go to Account > Orders > {order} and choose Cancel order; you'll get a confirmation email and the full ${price} goes back to your original payment method within 5-7 business days. If it has already shipped, you can simply refuse the delivery, or keep it unopened and start a free return within 30 days."),
             ("Orders can't be cancelled once they're placed. If you refuse the delivery, we charge a 15% cancellation fee.",
              "To cancel, send the {short} back by registered post at your own cost; the refund is issued as store credit.")),
    Scenario("express_shipping", "orders", "our delivery options",
             ("How fast is express shipping for the {product}, and how much does it cost?",
              "I need the {product} quickly. What's the fastest shipping you have?"),
             ("Express delivers in 1-2 business days for $12.95. Standard (3-5 business days) is free on the {short}, since it's over $50.",
              "Our fastest option is express: 1-2 business days for $12.95, and orders placed before 2 pm ship the same day. Standard shipping takes 3-5 business days and is free on orders over $50, so it costs nothing on the ${price} {short}. You choose the option at checkout, and the tracking link is emailed as soon as the parcel leaves us."),
             ("Express shipping is free and arrives the same day anywhere in the country.",
              "We only offer one shipping speed: everything takes about 2 weeks and costs $25, whatever you order.")),
    Scenario("delivered_not_received", "orders", "a parcel marked as delivered",
             ("Tracking says my {product} was delivered, but there's nothing at my door. What now?",
              "Order {order} shows as delivered but I never got it."),
             ("Check your porch, mailroom and neighbours, and give it 48 hours, since carriers sometimes scan early. If the {short} still isn't there, reply with {order} and we'll reship it or refund you at no cost.",
              "I'm sorry, that's worrying. Carriers sometimes mark a parcel as delivered a little early, so please check around the porch, your building's mailroom and with neighbours, and allow 48 hours. If your {short} still hasn't turned up after that, reply with order {order} and we'll send a replacement or refund you in full, whichever you prefer. You don't need to deal with the carrier yourself; we handle the claim."),
             ("Once tracking says delivered, it's no longer our responsibility. You'll need to file a claim with the carrier yourself.",
              "Parcels marked as delivered are considered received, so we can't resend the {short}. We'd suggest filing a police report.")),
    Scenario("wrong_item", "orders", "receiving the wrong item",
             ("I ordered the {product} but the box had something else in it.",
              "You sent me the wrong item instead of my {product} (order {order})."),
             ("Sorry about that! Reply with a photo of what arrived and the packing slip, and we'll ship the right {short} within 2 business days, with a free return label for the wrong item.",
              "Sorry about the mix-up! Please reply with a photo of the item you received and the packing slip from order {order}. We'll ship the correct {product} within 2 business days at no cost, and email you a prepaid label for sending back the wrong item; there's no rush on that, and you won't be charged for either shipment."),
             ("You'll need to pay return shipping for the wrong item and place a new order for the {short}.",
              "Mistakes like this are corrected once the wrong item is back with us, which usually takes about 6 weeks, and then we send the {short}.")),
    # --- refunds and returns ---
    Scenario("return_policy", "returns", "our return policy",
             ("What's your return policy for the {product}?",
              "If I don't like the {product}, can I send it back?"),
             ("You can return the {short} within 30 days of delivery for any reason, with a free label from Account > Orders > Return item. The refund goes to your original payment method.",
              "You have 30 days from delivery to return the {short}, for any reason, even if you've used it. Start the return under Account > Orders > {order} > Return item to get a free prepaid label, and pack all the accessories. Once the parcel reaches us, the refund goes back to your original payment method within 5-7 business days. There's no restocking fee."),
             ("We accept returns within 7 days, only if the box is unopened, and there's a 20% restocking fee.",
              "Returns are accepted for store credit only, and you cover the shipping cost yourself.")),
    Scenario("refund_status", "returns", "the refund for order {order}",
             ("I sent back my {product} last week. When will I get my refund?",
              "How long do refunds take? I returned the {product} from order {order}."),
             ("The refund is issued once the warehouse scans your return, then takes 5-7 business days to reach your bank. Check its status under Account > Orders > {order}.",
              "We issue the refund as soon as our warehouse scans your returned {short}, usually within 2 business days of it arriving. From then, it takes 5-7 business days to appear on your original payment method, depending on your bank. You can see each step under Account > Orders > {order}, and you'll get an email when the refund is issued. If it's been longer than that, reply with the return tracking number and we'll chase it."),
             ("Refunds are processed once per quarter, so it can take up to 90 days.",
              "Refunds are only issued after we've inspected and resold the {short}, which can take several months.")),
    Scenario("return_opened", "returns", "returning a used item",
             ("Can I return the {product} if I've already opened and used it?",
              "I've used my {product} for a week and it's not for me. Is it still returnable?"),
             ("Yes. Used items are fine within 30 days of delivery; just include all the accessories that came with the {short}.",
              "Yes, you can. Our 30-day return window covers opened and used items, so you can send the {short} back even after trying it. Please include the cable and any accessories that came in the box; the original packaging helps but isn't required. Start the return from Account > Orders > {order} > Return item for a free label, and the refund follows within 5-7 business days of it reaching us."),
             ("No, opened items can't be returned under any circumstances.",
              "Used items can be returned, but we deduct 50% of the price for wear and cleaning.")),
    Scenario("damaged", "returns", "an item that arrived damaged",
             ("My {product} arrived damaged. What should I do?",
              "The box was crushed and my {product} is cracked."),
             ("I'm sorry! Reply with a photo of the damage and the box and we'll ship a new {short} within 2 business days. There's no need to send the damaged one back.",
              "I'm really sorry it arrived like that. Please reply with a couple of photos showing the damage and the outer box. We'll ship a replacement {short} within 2 business days at no cost, and you don't need to return the damaged one; please recycle it responsibly. If you'd rather have your money back than a replacement, say so and we'll refund the full ${price} instead."),
             ("Shipping damage is covered by the carrier, not us, so please contact them directly for compensation.",
              "Cosmetic or shipping damage isn't covered. You can still use the {short}; cracks don't affect how it works.")),
    Scenario("exchange", "returns", "exchanging for a different colour",
             ("Can I exchange my {product} for a different colour?",
              "I'd like to swap the {product} I got for another colour. How does that work?"),
             ("We don't do direct swaps, but the quickest way is to order the colour you want, then return the original {short} free within 30 days for a refund.",
              "We can't swap items directly, but the fastest way is to place a new order for the colour you'd like, so it ships right away, then return the original {short} from Account > Orders > {order} > Return item within 30 days. The label is free, and the refund for the first one reaches your card within 5-7 business days of it arriving back with us."),
             ("Colour exchanges are only possible in our physical stores.",
              "Exchanges can only be requested within 48 hours of delivery and cost $20 to process.")),
    Scenario("gift_return", "returns", "returning a gift",
             ("I got the {product} as a gift. Can I return it without a receipt?",
              "Someone gave me the {product} but I already have one. How do I return a gift?"),
             ("Yes: use the gift return form at brightleaf.com/returns with the order number from the packing slip. You'll get store credit, and the giver isn't told.",
              "Yes, gifts can be returned without a receipt. Go to brightleaf.com/returns, choose Return a gift and enter the order number from the packing slip (or the buyer's email address). You'll get a free label, and once the {short} reaches us the value is issued to you as store credit. The person who bought it isn't notified. The usual 30-day window from delivery applies."),
             ("Gift returns need the original buyer's card, so the person who bought the {short} has to return it.",
              "Gifts can't be returned at all, only resold on a marketplace.")),
    # --- billing ---
    Scenario("double_charge", "billing", "being charged twice",
             ("I was charged twice for my {product} order {order}!",
              "There are two charges of ${price} on my card for one {product}. Why?"),
             ("One of them is usually a temporary authorisation hold that drops off within 3-5 business days. If both charges are still there after that, reply with {order} and we'll refund the duplicate.",
              "Sorry for the worry! Usually only one of those is a real charge: the other is a temporary authorisation hold placed when the order was made, and your bank removes it within 3-5 business days. If both ${price} charges are still posted after that, reply with order {order} and the last four digits of the card, and we'll refund the duplicate the same day. You never need to send us the full card number."),
             ("Double charges are final. The second payment will be kept as store credit on your account.",
              "Two charges means you ordered two {short}s, so the second one will ship shortly.")),
    Scenario("invoice", "billing", "an invoice for your purchase",
             ("How do I get an invoice for my {product} purchase?",
              "I need a VAT invoice for the {product} I bought for my office."),
             ("Go to Account > Orders > {order} and click Download invoice; you'll get a PDF right away.",
              "You can download it yourself: open Account > Orders > {order} and click Download invoice to get a PDF. If you need your company name or VAT number on it, add them under Account > Billing details first; the invoice is regenerated with those details the next time you download it, including for past orders like this {short}."),
             ("We don't issue invoices for online orders; your bank statement serves as the receipt.",
              "Invoices are sent by post within 90 days of purchase, and a copy costs $5.")),
    Scenario("update_card", "billing", "updating your payment card",
             ("I need to update the payment card on my account. I use it for my {product} orders.",
              "My card expired. How do I change it for my {product} subscription?"),
             ("Go to Account > Payment methods, add the new card and set it as default. You can then remove the old one.",
              "Open Account > Payment methods, choose Add card, enter the new card and tick Set as default. Anything charged from then on, including Brightleaf Plus renewals for your {short}, uses the new card; you can remove the expired card from the same page. Orders that are already placed keep the card they were paid with."),
             ("For security reasons, card changes can only be made by mailing us a signed form.",
              "You'll need to cancel every order and subscription, close the account and open a new one with the new card.")),
    Scenario("promo_code", "billing", "a discount code",
             ("My discount code isn't working on the {product}. What am I doing wrong?",
              "The promo code from your email gets rejected at checkout for the {product}."),
             ("Codes are case-sensitive, one per order, and have an expiry date and sometimes a minimum spend. If you already ordered without it, reply within 14 days and we'll refund the difference.",
              "A few things to check: codes are case-sensitive, only one code works per order, and each has an expiry date and sometimes a minimum spend, both listed in the email. Some codes also exclude items already on sale, which may apply to the {short}. If you've already placed the order without the code, reply within 14 days with {order} and we'll refund the discount to your card."),
             ("Discount codes only work in the mobile app, and only at weekends.",
              "Codes can't be used on the {short}; they're only valid on gift cards.")),
    Scenario("price_drop", "billing", "a price drop after purchase",
             ("The {product} went on sale two days after I bought it. Can I get the difference back?",
              "I paid ${price} for the {product} and now it's cheaper. Do you do price adjustments?"),
             ("Yes: we match our own price within 14 days of purchase. Reply with order {order} and we'll refund the difference to your card.",
              "Yes, we do. If our price drops within 14 days of your purchase, we refund the difference. Reply with order {order} and we'll send the difference for the {short} back to your original payment method; it shows up within 5-7 business days. This applies to our own prices, not to other retailers' offers."),
             ("Prices are final at checkout; we never offer price adjustments.",
              "Price adjustments are given as loyalty points, and only after 60 days.")),
    Scenario("unknown_charge", "billing", "a charge you don't recognise",
             ("There's a Brightleaf charge on my statement I don't recognise. I only bought the {product}.",
              "Why was I charged by Brightleaf this month? I didn't order anything besides my {product}."),
             ("It's usually a Brightleaf Plus renewal or an order charged when it shipped. Check Account > Subscriptions and Account > Orders, or reply with the date and amount and we'll look it up.",
              "It's most often one of two things: a Brightleaf Plus renewal (check Account > Subscriptions) or an order that was charged when it shipped rather than when it was placed (check Account > Orders). If neither matches, reply with the date and amount of the charge; we never need your full card number. If it turns out not to be ours, we'll tell you so you can raise it with your bank."),
             ("Any charge from us is correct by definition; disputing it with your bank will permanently close your account.",
              "That's the annual $30 device fee every {short} owner pays; it can't be refunded.")),
    # --- account and password ---
    Scenario("reset_password", "account", "your password",
             ("I forgot my password and can't sign in to manage my {product}.",
              "How do I reset my password? I need to get into the app for my {product}."),
             ("Tap Forgot password? on the sign-in screen and we'll email a reset link, valid for 30 minutes. Check your spam folder if it doesn't show up.",
              "Tap Forgot password? on the sign-in screen of the Brightleaf app or website and enter your email address. We'll send a reset link that works for 30 minutes. If nothing arrives within 10 minutes, check spam and make sure it's the address you signed up with. Your {short} and its settings stay linked to your account, so nothing is lost."),
             ("Reply with your date of birth and we'll email you your current password.",
              "Passwords can't be reset; you'll need to create a new account and add the {short} again.")),
    Scenario("change_email", "account", "changing your email address",
             ("How do I change the email address on my Brightleaf account?",
              "I'm switching email providers. Can I update my login email? My {product} is set up on this account."),
             ("Go to Account > Profile > Email, enter the new address and click the confirmation link we send to it. Your {short} stays linked.",
              "Go to Account > Profile > Email and enter the new address. We send a confirmation link to the new address, and the change takes effect once you click it; your old address gets a notice too, for security. Everything stays linked to the account: your {short}, orders and subscription. Use the new address the next time you sign in."),
             ("Email addresses are permanent. You'd need to create a new account and move your {short} to it.",
              "Email changes take 30 days and require a copy of your ID sent by post.")),
    Scenario("locked_account", "account", "a locked account",
             ("My account is locked after I tried logging in too many times.",
              "It says my account is locked and I can't control my {product}."),
             ("After 5 failed sign-ins the account locks for 15 minutes. Wait and try again, or reset your password, which unlocks it right away.",
              "For your security, the account locks for 15 minutes after 5 failed sign-in attempts. You can wait and try again, or tap Forgot password? to reset it, which unlocks the account immediately. Your {short} keeps working in the meantime with its current settings; only app control is paused while you're signed out."),
             ("Locked accounts are permanently disabled. You'll have to open a new one.",
              "The lock lasts 7 days and can't be lifted early, even by support.")),
    Scenario("two_factor", "account", "account security",
             ("How do I turn on two-factor authentication?",
              "Can I add extra security to the account that controls my {product}?"),
             ("Yes: Account > Security > Two-factor authentication. Scan the QR code with an authenticator app and enter the 6-digit code.",
              "Yes, we recommend it, especially for a connected device like the {short}. Go to Account > Security > Two-factor authentication, scan the QR code with an authenticator app, and enter the 6-digit code it shows. Then save the backup codes somewhere safe; each one gets you in once if you lose your phone."),
             ("Two-factor authentication isn't available; just use a longer password.",
              "Two-factor authentication is only offered to business accounts.")),
    Scenario("delete_account", "account", "deleting your account",
             ("How do I delete my Brightleaf account? I gave away my {product}.",
              "I want my account and data deleted."),
             ("Go to Account > Privacy > Delete account. There's a 14-day grace period; signing in during it cancels the deletion. Remove the {short} from the app first.",
              "Go to Account > Privacy > Delete account and confirm. Deletion happens after a 14-day grace period, and signing in during that time cancels it. Any Brightleaf Plus subscription is cancelled, and your personal data is erased, except order records we must keep for tax purposes. If you've passed the {short} on, remove it in the app first so the new owner can add it to their account."),
             ("Accounts can't be deleted, only deactivated, and we keep all your data indefinitely.",
              "To delete an account, return every device you've bought, including the {short}, first.")),
    Scenario("app_login", "account", "signing in to the app",
             ("I can't sign in to the Brightleaf app to control my {product}. It says wrong email.",
              "The app won't accept my login, but the website does. I need it for my {product}."),
             ("Make sure you use the same email and sign-in method (email, Apple or Google) as on the website, and update the app; if it still fails, reset your password.",
              "The app and website use the same account, so first check you're using the same sign-in method: if you created the account with Apple or Google, tap that button rather than typing an email. Then update the app from your app store, since old versions can't sign in. If it still fails, tap Forgot password? to set a new password. Your {short} stays linked to the account throughout."),
             ("The app uses a separate account from the website, so you'll need to register again and re-buy the {short} licence.",
              "App sign-in only works on Wi-Fi networks, not on mobile data.")),
    # --- product use ---
    Scenario("setup", "usage", "setting up the {short}",
             ("How do I set up my new {product}?",
              "Just unboxed the {product}. What are the first steps?"),
             ("Install the Brightleaf app, sign in, tap Add device, then press and hold {button} for 3 seconds until the light blinks blue.",
              "Install the Brightleaf app and sign in (or create an account). Tap Add device and pick the {short}, then press and hold {button} for 3 seconds until the light blinks blue. The app walks you through joining your Wi-Fi; keep your phone within a few metres of the {short}. If a firmware update is offered at the end, install it; it takes about five minutes."),
             ("The {short} works without setup: just plug it in. The app is only for business customers.",
              "Setup has to be done by one of our technicians, who'll visit within 4 weeks for a $49 fee.")),
    Scenario("factory_reset", "usage", "resetting the {short}",
             ("How do I factory reset the {product}?",
              "I'm selling my {product}. How do I wipe it back to factory settings?"),
             ("Press and hold {button} for 10 seconds until the light blinks white. The {short} restarts with factory settings.",
              "Press and hold {button} for 10 seconds, until the light blinks white, then let go. The {short} restarts with factory settings and forgets your Wi-Fi and account. If you're selling it, also remove it from the app (Device > Settings > Remove device) so the new owner can add it to their own account."),
             ("Factory resets can only be done by our technicians, so you'll need to ship the {short} to us.",
              "Unplug the {short} and leave it off for 24 hours; it resets itself automatically.")),
    Scenario("cleaning", "usage", "looking after the {short}",
             ("How should I clean and maintain the {product}?",
              "Is there any maintenance I need to do on my {product}?"),
             ("Just {care}.",
              "Not much is needed: {care}. Don't use solvents or put any part in the dishwasher; a damp cloth is fine for the outside of the {short}. Keeping it clean keeps it working well and within warranty."),
             ("Put the whole {short} in the dishwasher once a week; it's fully dishwasher-safe.",
              "Soak the {short} in warm soapy water for an hour each month to keep it working properly.")),
    Scenario("warranty", "usage", "the warranty",
             ("What does the warranty on the {product} cover?",
              "Is my {product} under warranty, and what do I do if it breaks?"),
             ("The {short} has a {warranty}-year warranty against defects in materials and workmanship. Claim under Account > Orders > {order} > Warranty claim.",
              "The {short} comes with a {warranty}-year warranty from delivery, covering defects in materials and workmanship, but not accidental damage such as drops or spills. To claim, open Account > Orders > {order} > Warranty claim and describe the fault. If it's covered, we ship a replacement at no cost, including shipping both ways."),
             ("The {short} comes with a 30-day warranty only, and you pay shipping both ways for repairs.",
              "The warranty only covers the box and packaging, not the {short} itself.")),
    Scenario("share_access", "usage", "sharing the {short}",
             ("Can my partner control the {product} from their phone too?",
              "How do I give my family access to our {product}?"),
             ("Yes: in the app, open the {short}, then Settings > Share device and enter their email. Up to 5 people can share it.",
              "Yes. In the Brightleaf app, open the {short}, go to Settings > Share device and enter your partner's email address. They get an invitation, and once they accept, the {short} appears in their app. Up to 5 people can share one device, and you can remove anyone from the same screen."),
             ("Each device can only be linked to one phone, so your partner would need their own {short}.",
              "Sharing needs a Brightleaf Plus subscription for every person who uses the {short}.")),
    Scenario("offline_use", "usage", "using the {short} without Wi-Fi",
             ("Does the {product} still work when the Wi-Fi is down?",
              "Will my {product} work without an internet connection?"),
             ("Yes. The {short}'s own controls work offline; only app control and updates need Wi-Fi. Settings sync when it's back online.",
              "Yes. The {short} keeps working with its own controls and its saved settings when the Wi-Fi is down. What you lose while offline is control from the app, notifications and firmware updates. Your settings are stored on the device itself and sync with the app as soon as the connection comes back, so nothing needs setting up again."),
             ("No. The {short} stops working entirely whenever your Wi-Fi is down.",
              "The {short} needs a wired Ethernet connection to work offline.")),
    # --- subscriptions ---
    Scenario("cancel_sub", "subscriptions", "your Brightleaf Plus subscription",
             ("How do I cancel my Brightleaf Plus subscription?",
              "I want to stop paying for Plus. My {product} works fine without it, right?"),
             ("Go to Account > Subscriptions > Brightleaf Plus > Cancel. Plus stays active until the end of the period you've paid for, and your {short} works fine without it.",
              "You can cancel any time under Account > Subscriptions > Brightleaf Plus > Cancel. There's no fee, you won't be charged again, and Plus stays active until the end of the period you've already paid for. Your {short} keeps working normally without Plus; you just lose the extra warranty year, the accessory discount and the longer history in the app."),
             ("Plus can only be cancelled by phone during business hours, and there's a cancellation fee of one month's price.",
              "If you cancel Plus, the {short} stops working until you resubscribe.")),
    Scenario("sub_price", "subscriptions", "Brightleaf Plus",
             ("What do I get with Brightleaf Plus for my {product}, and how much is it?",
              "Is Brightleaf Plus worth it for my {product}? What does it include?"),
             ("Plus costs $4.99/month or $49/year. It adds an extra year of warranty on your {short}, 10% off accessories and 90 days of history in the app.",
              "Plus costs $4.99 a month or $49 a year. For your {short} it adds a year of warranty on top of the standard {warranty}-year one, 10% off accessories and replacement parts, and 90 days of history in the app instead of 7. The {short} works fully without it, so it's only worth it if those extras matter to you; there's a 30-day free trial to find out."),
             ("Plus costs $4.99 a week and is required to keep using the {short} after the first month.",
              "Plus is a one-off $199 upgrade that doubles the speed of the {short}.")),
    Scenario("free_trial", "subscriptions", "the Plus free trial",
             ("Will I be charged after the Brightleaf Plus free trial ends?",
              "I started the Plus trial with my {product}. When does billing start?"),
             ("Yes, unless you cancel: the trial lasts 30 days, then Plus is $4.99/month. We email you 3 days before it ends.",
              "The free trial lasts 30 days. If you don't cancel, Plus renews at $4.99 a month on day 31, charged to your card on file. We send a reminder email 3 days before the trial ends, and you can cancel any time before then under Account > Subscriptions at no cost. Your {short} keeps working either way."),
             ("The trial is free forever; you're only charged if you upgrade manually.",
              "You're charged a full year of Plus on the first day of the trial, refundable after it ends.")),
    Scenario("pause_sub", "subscriptions", "pausing your subscription",
             ("Can I pause my Plus subscription instead of cancelling? I'm travelling and won't use my {product}.",
              "Is there a way to put Brightleaf Plus on hold for a couple of months?"),
             ("Yes, for up to 3 months: Account > Subscriptions > Pause. You won't be charged, and it resumes automatically.",
              "Yes. Go to Account > Subscriptions > Brightleaf Plus > Pause and pick 1, 2 or 3 months. You aren't charged during the pause, and Plus resumes automatically at the end of it, or earlier if you tap Resume. Your {short} keeps working normally; only the Plus extras are paused."),
             ("Pausing isn't possible. If a payment is missed, your {short} will be locked.",
              "You can pause, but the paused months are still billed at half price.")),
    Scenario("switch_annual", "subscriptions", "switching to a yearly plan",
             ("How do I switch Brightleaf Plus from monthly to yearly?",
              "Is the yearly Plus plan cheaper? How do I change to it?"),
             ("Go to Account > Subscriptions > Change plan > Yearly. The change applies at your next renewal, so you're never charged twice.",
              "Yes, yearly is $49, which saves about $10 compared with 12 months at $4.99. Go to Account > Subscriptions > Change plan and pick Yearly. The switch takes effect at your next monthly renewal date, so you won't be charged twice, and nothing changes for your {short} in the meantime."),
             ("You have to cancel first and wait 30 days before you can sign up for the yearly plan.",
              "The yearly plan costs more than twelve monthly payments, so there's no reason to switch.")),
    Scenario("sub_refund", "subscriptions", "a Plus renewal charge",
             ("I forgot to cancel and got charged for a year of Plus. Can I get a refund?",
              "Brightleaf Plus renewed for another year without me noticing. Is that refundable?"),
             ("Yes: yearly renewals are fully refundable within 14 days of the charge. Cancel under Account > Subscriptions and choose Request refund.",
              "Yes. Yearly renewals are fully refundable within 14 days of the charge. Go to Account > Subscriptions > Brightleaf Plus > Cancel and choose Request refund, or just reply here and we'll do it for you. The $49 goes back to your card within 5-7 business days, and your {short} keeps working without Plus."),
             ("Annual renewals are never refundable, even on the same day.",
              "Renewals are refunded as a voucher for accessories, valid for 30 days.")),
    # --- technical problems ---
    Scenario("wifi", "technical", "the Wi-Fi connection",
             ("My {product} won't connect to Wi-Fi.",
              "Setup fails at the Wi-Fi step for my {product}. Help?"),
             ("The {short} only uses 2.4 GHz Wi-Fi, so make sure your phone is on a 2.4 GHz network during setup, stay close to the router and double-check the password.",
              "The {short} connects to 2.4 GHz Wi-Fi only, which is the most common cause. During setup, make sure your phone is on the 2.4 GHz network (some routers need the 2.4 and 5 GHz bands split, or band steering turned off). Keep the {short} within about 10 metres of the router, double-check the Wi-Fi password, and restart both the router and the {short}. Finally, update the Brightleaf app and try Add device again."),
             ("The {short} only works with 5 GHz networks, so switch your router to 5 GHz only.",
              "Wi-Fi problems mean the {short}'s antenna is faulty; it has to be replaced at your own cost.")),
    Scenario("app_crash", "technical", "the app crashing",
             ("The Brightleaf app keeps crashing when I open my {product}.",
              "Every time I tap my {product} in the app, the app closes."),
             ("Update the app and restart your phone. If it still crashes, reinstall it; your {short} and its settings are saved to your account.",
              "Sorry about that. First update the Brightleaf app and restart your phone. If it still crashes, clear the app's cache (Android: Settings > Apps > Brightleaf > Storage > Clear cache) or delete and reinstall it on iPhone. Your {short} and all its settings are saved to your account, so nothing is lost. If it keeps happening, reply with the app version from Settings > About and we'll pass it to the app team."),
             ("Reinstalling the app permanently erases your {short}, so you'll have to buy a new one.",
              "The app only supports phones bought this year; older phones will keep crashing.")),
    Scenario("firmware", "technical", "a firmware update",
             ("The firmware update for my {product} keeps failing.",
              "My {product} is stuck on an old firmware. The update always errors out."),
             ("Keep the {short} powered and near the router, keep the app open, and retry from Device > Settings > Firmware. It keeps working on the current version meanwhile.",
              "Updates usually fail because of a weak connection or low power. Keep the {short} powered (or charged above 50%), move it near the router, and keep the app open during the update. Then retry from Device > Settings > Firmware. If it fails three times, restart the {short} by holding {button} for 10 seconds and try once more. It keeps working normally on the current version in the meantime."),
             ("A failed update voids the warranty, so stop trying and buy a replacement.",
              "Firmware can only be updated by sending the {short} to our service centre.")),
    Scenario("wont_turn_on", "technical", "the {short} not turning on",
             ("My {product} won't turn on.",
              "The {product} is completely dead; no lights at all."),
             ("{power_tip} Then press and hold {button} for 10 seconds. If it's still dead, it's covered by the {warranty}-year warranty.",
              "Let's try a couple of things. {power_tip} Then press and hold {button} for 10 seconds to force a restart. If there's still no light, the {short} is covered by its {warranty}-year warranty: reply with order {order} and we'll ship a replacement at no cost."),
             ("If the {short} won't turn on, it's been damaged by the user, which isn't covered.",
              "Put the {short} in the freezer for an hour; that resets the battery and usually fixes it.")),
    Scenario("shows_offline", "technical", "the {short} showing as offline",
             ("The app says my {product} is offline.",
              "My {product} keeps dropping offline in the app."),
             ("Check your router is online, then restart the {short}. If you changed your Wi-Fi name or password, add it again in the app.",
              "This usually means the {short} lost its Wi-Fi. Check the router is online, then restart the {short} by holding {button} for 10 seconds. If you recently changed your Wi-Fi name or password, the {short} can't rejoin by itself: remove it in the app and add it again. If it keeps dropping, move it closer to the router or add a mesh point; it needs a steady 2.4 GHz signal."),
             ("'Offline' means the {short} has reached end of life and is no longer supported.",
              "Offline status is normal and can't be fixed; the app only shows devices online on weekdays.")),
    Scenario("notifications", "technical", "app notifications",
             ("I'm not getting notifications from my {product}.",
              "Notifications from the {product} stopped coming through on my phone."),
             ("Check that notifications are allowed for the Brightleaf app in your phone settings, and switched on under the {short}'s Notifications in the app.",
              "There are three switches to check. In your phone's settings, allow notifications for the Brightleaf app. In the app, open the {short} and turn on the alerts you want under Notifications. On Android, also turn off battery optimisation for the app, since it can block alerts. Do Not Disturb or Focus modes will hold them back too."),
             ("Notifications are only available with a paid Plus subscription.",
              "The {short} can't send notifications to iPhones.")),
    # --- complaints ---
    Scenario("late_delivery", "complaints", "the late delivery",
             ("My {product} was supposed to arrive days ago and it's still not here. This is ridiculous.",
              "Order {order} is a week late. I'm really frustrated."),
             ("I'm sorry, that's frustrating. If tracking for {order} hasn't moved in 3 business days, we'll send a new {short} or refund you, and refund any express shipping fee.",
              "I'm sorry, I understand how frustrating that is when you're waiting on it. If the tracking for {order} hasn't updated in 3 business days, we'll treat the parcel as lost and send a new {short} at no cost, or refund you in full if you'd prefer. If you paid for express shipping, we'll refund that fee as well. Just reply with which option you'd like."),
             ("Delivery dates are only estimates, so we can't do anything until 60 days have passed.",
              "Late deliveries are the carrier's fault, so we can't offer a replacement or refund.")),
    Scenario("bad_service", "complaints", "your support experience",
             ("I've contacted support three times about my {product} and nobody has fixed it.",
              "Your support keeps sending me the same answers and my {product} is still broken."),
             ("I'm sorry you've had to repeat yourself. I'll take over this case: reply once with the issue and order {order}, and I'll escalate it so you hear back within 1 business day.",
              "I'm sorry; having to explain the same problem three times isn't the experience you should have. I'll take ownership of your case from here. Please reply once with a short description of what's wrong with the {short} and the order number ({order}), and I'll escalate it to our senior team, who'll reply within 1 business day with a fix, a replacement or a refund."),
             ("Each new contact resets your case, so writing again adds another 30 days to the wait.",
              "Support cases for the {short} are closed automatically after two replies, so we can't help further.")),
    Scenario("broke_quickly", "complaints", "a {short} that stopped working",
             ("My {product} stopped working after three weeks. Really disappointed.",
              "I've had the {product} less than a month and it's already broken."),
             ("I'm sorry! You're within the 30-day return window, and the {short} also has a {warranty}-year warranty, so we can refund or replace it. Reply with {order}.",
              "I'm really sorry it stopped working so soon. You have two options. You're within the 30-day return window, so you can return the {short} for a full refund. Or, since it's covered by the {warranty}-year warranty, we can ship a replacement at no cost. Reply with order {order}, a line about what happened, and which option you'd prefer."),
             ("Products that fail after two weeks aren't covered by the warranty or by returns.",
              "Three weeks is outside the return window, and warranty repairs cost $60 plus shipping.")),
    Scenario("restocking_fee", "complaints", "a restocking fee",
             ("Why was I charged a restocking fee when I returned the {product}?",
              "I was charged a fee on my {product} return. That wasn't mentioned anywhere!"),
             ("We don't charge restocking fees on returns within 30 days, so that's our mistake. Reply with {order} and we'll refund it within 5-7 business days.",
              "You're right to question it: we don't charge restocking fees on returns within 30 days, so this was our mistake, and I'm sorry. Reply with order {order} and we'll refund the fee to your original payment method; it shows up within 5-7 business days. I'll also flag it so it doesn't happen on other returns."),
             ("The restocking fee is standard: 25% on all returns.",
              "Restocking fees are charged when the {short} has been used, and they're not refundable.")),
    Scenario("not_as_pictured", "complaints", "the {short} not matching the photos",
             ("The {product} looks nothing like the photos on your website.",
              "I'm unhappy with my {product}. The colour is totally different from the product page."),
             ("I'm sorry it didn't match what you expected. You can return the {short} free within 30 days for a full refund, and I'll pass your feedback to our product team.",
              "I'm sorry it isn't what you expected from the pictures. You can return the {short} within 30 days for a full refund: start it under Account > Orders > {order} > Return item for a free label. If you can, reply with a photo next to the product page; I'll share it with our product team so we can fix the photos for other customers."),
             ("Product photos are for illustration only, so returns aren't accepted for appearance.",
              "Colour differences are caused by your screen, so we can't accept the {short} back.")),
)
# fmt: on

Q_PREFIX = ("", "", "", "Hi! ", "Hello! ", "Hey there. ", "Quick question: ", "Good morning. ")
Q_SUFFIX = ("", "", "", " Thanks!", " Thanks in advance.", " Any help appreciated.", " Cheers.")

# Polite wrappers, shared by chosen and "wrong" answers so that tone alone never decides the pair.
POLITE_OPEN = ("", "", "Thanks for reaching out! ", "Happy to help with that. ", "Thanks for the question. ", "Hi there! ", "Sure thing. ")
POLITE_OPEN += ("I can help with that. ", "Thanks for getting in touch. ")
POLITE_CLOSE = ("", "", " Hope that helps!", " Let me know if there's anything else I can do.", " Have a great day!")
POLITE_CLOSE += (" If anything's unclear, just reply here and we'll sort it out.", " Happy to help further if you need it.")

RUDE_OPEN = ("Ugh. ", "Look. ", "Honestly? ", "Seriously. ", "We've said this many times. ", "This is in the FAQ. ", "Fine. ", "Sigh. ")
RUDE_CLOSE = (" Next time, read the help pages before writing in.", " Don't make us repeat this.", " Not that complicated.", "")
RUDE_CLOSE += (" We have better things to do than answer this.", " Try to keep up.", " Please don't email again about this.")
RUDE_MID = (
    "That's not our problem. Figure it out yourself.",
    "We get this question a hundred times a day.",
    "Did you even try looking it up before writing to us?",
    "If {about} is too much for you, maybe the {short} isn't the right product for you.",
    "Read the manual that came with your {short}. It's all in there.",
    "I'm not going to walk you through {about} step by step.",
    "People who actually read instructions don't have this problem.",
    "You're the third person today to ask about {about}, and frankly it's getting tiresome. Everything you need is on our website, which you clearly haven't bothered to open.",
    "We're a support desk, not a babysitting service, and I'm not here to hold your hand through {about}.",
    "Complaining to us won't change anything, so I don't know what you expect me to do about it.",
    "Honestly, questions like this are why our queue is so long. The answer is the same as it was the last ten times someone asked.",
    "I'm not sure what part of this is confusing, but it really isn't our job to explain the obvious about {about}.",
    "Maybe ask someone more tech-savvy to help you with the {short}, because this isn't hard.",
)
# Confident, polite padding for "wrong" answers: it makes them read like real (mistaken) policy answers
# and keeps them as long as chosen ones, so length does not mark them.
WRONG_PAD = (
    "I know that's not the answer you were hoping for, but it's our standard policy.",
    "This applies to all our products, including the {short}.",
    "You'll find the same information in our help centre.",
    "I've added a note to your account so the rest of the team has the context.",
    "Many customers ask about {about}, so you're not alone in this.",
    "That's been the case since we launched the {short}, and it hasn't changed.",
    "Our team confirmed this again just last week, so it's up to date.",
)
EVASIVE_OPEN = ("Thank you for contacting Brightleaf about {about}. ", "Thanks for your message regarding {about}. ", "")
EVASIVE_OPEN += ("We appreciate you reaching out. ", "I've noted your question about {about}. ")
EVASIVE_MID = (
    "We understand how important this is to you, and we're committed to giving every customer a great experience.",
    "Every situation is a little different, and a number of factors can be involved.",
    "Questions about {about} are handled according to our policies, which are designed to be fair to everyone.",
    "Our team regularly reviews cases like yours as part of our ongoing commitment to quality.",
    "Unfortunately I'm not able to go into specifics here.",
    "Rest assured that your feedback has been recorded and shared with the relevant department.",
    "We're always working to improve the experience of owning your {short}, and input like yours helps us do that.",
    "This is something we take very seriously, and it's being looked at as part of a broader review.",
)
EVASIVE_CLOSE = ("", " Thank you for your patience and understanding.", " We'll be in touch if there's anything further.")
EVASIVE_CLOSE += (" We value your business.", " Please keep an eye on your inbox for any updates.")
VAGUE_TOPIC = {
    "orders": "Shipping can vary, so it should turn up at some point.",
    "returns": "Returns and refunds take a while and depend on a lot of things.",
    "billing": "Charges can look a bit odd sometimes, but it's probably fine.",
    "account": "There's a settings page for that somewhere in your account, I think.",
    "usage": "There's a button or a setting for most things on the {short}; try a few and see.",
    "subscriptions": "Subscriptions can be changed online, somewhere in the account area.",
    "technical": "Tech issues like that usually go away if you turn things off and on again.",
    "complaints": "Sorry about that, these things happen from time to time.",
}
VAGUE_FILLER = (
    "Maybe give it some time.",
    "It depends on the situation.",
    "You could try checking the app or the website.",
    "Hard to say exactly without looking into it, but it's usually nothing serious.",
    "Some customers find that trying again later helps, and others find it sorts itself out eventually, so it could go either way.",
    "There might be an option for {about} somewhere, I'm not totally sure where, so have a look around and it should turn up.",
    "I'd probably just wait and see what happens, and if it still doesn't work, try again.",
)
OFF_TOPIC = (
    "Did you know the {short} comes in three colours? Our new accessories collection just launched too.",
    "Our support hours are 8 am to 8 pm, Monday to Saturday, and we're closed on public holidays.",
    "Fun fact: the {short} was designed in our Portland studio, where the team tested over forty prototypes before settling on the final design.",
    "Have you tried our other products? The Brightleaf range covers the whole home, from the kitchen to the nursery.",
    "Don't forget to follow us on social media for tips, product news and the occasional giveaway!",
    "We recently planted a tree for every order placed this spring, and we're proud to say our packaging is now fully recyclable.",
)
POWER_TIP = {
    True: "Charge it for at least 30 minutes with the cable from the box; a fully drained battery can take a few minutes to show any light.",
    False: "Make sure it's plugged into a working outlet (test the socket with a lamp) and that the cable is pushed fully into the {short}.",
}

COURTESY_STARTS = ("I'm sorry", "I'm really sorry", "Sorry", "No problem", "Let's try")


def _slots(scenario: Scenario, product: Product, rng: random.Random) -> dict:
    """The values a scenario's templates refer to, drawn per (scenario, product) row."""
    slots = {
        "product": product.name,
        "short": product.short,
        "order": f"BL-{rng.randint(100000, 999999)}",
        "days": rng.randint(3, 9),
        "price": product.price,
        "warranty": product.warranty,
        "button": product.button,
        "care": product.care,
        "power_tip": POWER_TIP[product.battery].format(short=product.short),
    }
    slots["about"] = scenario.about.format(**slots)
    return slots


def _fill(rng: random.Random, slots: dict, *parts) -> str:
    """Pick one item from each tuple (or take a str as is), format them, and join them into one answer."""
    picked = [p if isinstance(p, str) else rng.choice(p) for p in parts]
    # Optional parts may be empty strings; collapse the double spaces they leave behind.
    return " ".join("".join(picked).format(**slots).split())


def _without_courtesy(body: str) -> str:
    """Drop an opening apology, so that the correct-but-rude answer does not apologise and sneer at once."""
    if body.startswith(COURTESY_STARTS):
        cut = min((i for i in (body.find(". "), body.find("! ")) if i >= 0), default=-1)
        if cut >= 0:
            return body[cut + 2 :]
    return body


def _chosen(scenario: Scenario, rng: random.Random, slots: dict) -> str:
    # Short answers are a little more common than long ones, to keep chosen lengths near rejected ones.
    body = scenario.chosen[0] if rng.random() < 0.65 else scenario.chosen[1]
    return _fill(rng, slots, POLITE_OPEN, body, POLITE_CLOSE)


def _rejected(style: str, scenario: Scenario, rng: random.Random, slots: dict) -> str:
    """One bad answer in the given style (see ``STYLES``)."""
    if style == "wrong":
        pads = " ".join(rng.sample(WRONG_PAD, rng.randint(0, 3)))
        return _fill(rng, slots, POLITE_OPEN, rng.choice(scenario.wrong) + " " + pads, POLITE_CLOSE)
    if style == "evasive":
        middle = " ".join(rng.sample(EVASIVE_MID, rng.randint(1, 3)))
        return _fill(rng, slots, EVASIVE_OPEN, middle, EVASIVE_CLOSE)
    if style == "rude":
        middle = " ".join(rng.sample(RUDE_MID, rng.randint(1, 3)))
        return _fill(rng, slots, RUDE_OPEN, middle, RUDE_CLOSE)
    if style == "off_topic":
        # Half the time a good answer to a *different* question about the same product: helpful in
        # form, useless here, so a reward model must read the prompt to reject it.
        if rng.random() < 0.5:
            other = rng.choice([s for s in SCENARIOS if s.topic != scenario.topic])
            return _fill(rng, slots, POLITE_OPEN, other.chosen, POLITE_CLOSE)
        middle = " ".join(rng.sample(OFF_TOPIC, rng.randint(1, 3)))
        return _fill(rng, slots, POLITE_OPEN, middle, POLITE_CLOSE)
    if style == "vague":
        fillers = " ".join(rng.sample(VAGUE_FILLER, rng.randint(1, 3)))
        return _fill(rng, slots, POLITE_OPEN, VAGUE_TOPIC[scenario.topic] + " " + fillers, POLITE_CLOSE)
    if style == "correct_but_rude":
        body = _without_courtesy(rng.choice(scenario.chosen))
        return _fill(rng, slots, RUDE_OPEN, body, RUDE_CLOSE)
    raise ValueError(f"unknown rejection style {style!r}")


def _combinations() -> tuple[list[tuple[Scenario, Product]], list[tuple[Scenario, Product]]]:
    """(scenario, product) pairs for train and test; each scenario holds out its own two products."""
    rng = random.Random(SEED)
    train, test = [], []
    for scenario in SCENARIOS:
        held_out = set(rng.sample(range(len(PRODUCTS)), TEST_PRODUCTS_PER_SCENARIO))
        for i, product in enumerate(PRODUCTS):
            (test if i in held_out else train).append((scenario, product))
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def support_records(split: str) -> list[dict]:
    """Rows with their provenance: ``scenario``, ``topic``, ``product``, ``style`` besides the answers.

    The published data sets drop those keys (TRL's preference format has none); tests and analysis use them.
    """
    train, test = _combinations()
    combos = {"train": train, "test": test}[split]
    records = []
    for i, (scenario, product) in enumerate(combos):
        rng = random.Random(f"{SEED}-{scenario.key}-{product.short}")
        slots = _slots(scenario, product, rng)
        question = _fill(rng, slots, Q_PREFIX, scenario.questions, Q_SUFFIX)
        # Styles rotate over the shuffled rows so every style is equally common in both splits.
        style = STYLES[i % len(STYLES)]
        chosen = _chosen(scenario, rng, slots)
        rejected = _rejected(style, scenario, rng, slots)
        records.append(
            {
                "question": question,
                "chosen": chosen,
                "rejected": rejected,
                "scenario": scenario.key,
                "topic": scenario.topic,
                "product": product.short,
                "style": style,
            }
        )
    return records


def preference_rows(split: str) -> list[dict]:
    """``support-preference``: conversational prompt / chosen / rejected."""
    return [
        {
            "prompt": [{"role": "user", "content": r["question"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in support_records(split)
    ]


def sft_rows(split: str) -> list[dict]:
    """``support-sft``: the same prompts with the chosen answer as the completion."""
    return [
        {"prompt": [{"role": "user", "content": r["question"]}], "completion": [{"role": "assistant", "content": r["chosen"]}]}
        for r in support_records(split)
    ]
