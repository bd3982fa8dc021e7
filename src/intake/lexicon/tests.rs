//! The lexicon's behaviour on single messages, one rule per test.

use super::facts::lengths;
use super::*;
use crate::intake::{DamageType, Part};

fn one(t: &str) -> Finding {
    let r = analyse(t);
    assert_eq!(r.findings.len(), 1, "{t}: {:?}", r.findings);
    r.findings[0].clone()
}

#[test]
fn seed_first_message() {
    let r = analyse("我的车右前门有刮痕，还有异响");
    assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
    assert_eq!(
        (r.findings[0].part, r.findings[0].position, r.findings[0].damage_type),
        (Part::Door, Some(Position::RightFront), DamageType::Scratch)
    );
    assert_eq!(r.findings[1].damage_type, DamageType::AbnormalNoise);
    assert_eq!(r.findings[1].part, Part::Door);
    assert!(!r.unsure);
}

fn keys(t: &str) -> Vec<(Part, Option<Position>, DamageType)> {
    analyse(t).findings.iter().map(|f| (f.part, f.position, f.damage_type)).collect()
}

#[test]
fn homophone_typos_are_read_as_the_word() {
    assert_eq!(keys("后保显杠有条列纹"), [(Part::Bumper, Some(Position::Rear), DamageType::Crack)]);
    assert_eq!(keys("左边前页子板蹭花了"), [(Part::Fender, Some(Position::LeftFront), DamageType::Scratch)]);
    assert_eq!(keys("一踩杀车就抖"), [(Part::Brakes, None, DamageType::Vibration)]);
}

#[test]
fn wheels_locate_and_pair() {
    // A wheel word next to the rim only says where the rim is.
    assert_eq!(keys("右后轮钢圈边上磕掉了一小块"), [(Part::WheelRim, Some(Position::RightRear), DamageType::Broken)]);
    // A knocking wheel is the suspension behind it.
    assert_eq!(keys("左前轮那块咚咚响"), [(Part::Suspension, Some(Position::LeftFront), DamageType::AbnormalNoise)]);
    let r = keys("左边前后两个轱辘的钢圈都刮花了");
    assert_eq!(
        r,
        [(Part::WheelRim, Some(Position::LeftFront), DamageType::Scratch), (Part::WheelRim, Some(Position::LeftRear), DamageType::Scratch)]
    );
    // A tyre that went flat lost air.
    assert_eq!(keys("右后轮胎打了气又瘪了"), [(Part::Tire, Some(Position::RightRear), DamageType::Leak)]);
}

#[test]
fn wings_lamps_and_pairs_follow_the_conventions() {
    assert_eq!(keys("右边叶子板上有个小坑"), [(Part::Fender, Some(Position::RightFront), DamageType::Dent)]);
    assert_eq!(keys("副驾这边的大灯撞碎了"), [(Part::Headlight, Some(Position::Right), DamageType::Broken)]);
    assert_eq!(keys("左前大灯不亮"), [(Part::Headlight, Some(Position::LeftFront), DamageType::NotWorking)]);
    assert_eq!(keys("被追尾了 左尾灯撞碎了"), [(Part::Taillight, Some(Position::Left), DamageType::Broken)]);
    let r = keys("两个后门都有划痕");
    assert_eq!(
        r,
        [(Part::Door, Some(Position::LeftRear), DamageType::Scratch), (Part::Door, Some(Position::RightRear), DamageType::Scratch)]
    );
    let r = keys("两个尾灯都碎了");
    assert_eq!(
        r,
        [(Part::Taillight, Some(Position::Left), DamageType::Broken), (Part::Taillight, Some(Position::Right), DamageType::Broken)]
    );
    let r = keys("右边前后叶子板都刮了");
    assert_eq!(
        r,
        [
            (Part::Fender, Some(Position::RightFront), DamageType::Scratch),
            (Part::QuarterPanel, Some(Position::RightRear), DamageType::Scratch)
        ]
    );
}

#[test]
fn how_it_happened_is_not_a_finding() {
    // The partless 刮 told how; the doors carry the damage.
    let r = keys("被树枝刮了一下，副驾这边两个门都有划痕");
    assert_eq!(
        r,
        [(Part::Door, Some(Position::RightFront), DamageType::Scratch), (Part::Door, Some(Position::RightRear), DamageType::Scratch)]
    );
    // Told again less precisely: the same finding.
    let r = keys("左边两个门都被划了，前门划得深");
    assert_eq!(
        r,
        [(Part::Door, Some(Position::LeftFront), DamageType::Scratch), (Part::Door, Some(Position::LeftRear), DamageType::Scratch)]
    );
    // Water in a cracked lamp is that crack; wind is not a scratch.
    assert_eq!(keys("左尾灯灯罩裂了，下雨往里进水"), [(Part::Taillight, Some(Position::Left), DamageType::Crack)]);
    assert_eq!(keys("昨晚刮大风，后挡风玻璃砸碎了"), [(Part::RearWindshield, None, DamageType::Broken)]);
}

#[test]
fn enquiries_and_fine_parts_are_not_problems() {
    assert!(keys("请问换一套米其林轮胎大概多少钱").is_empty());
    assert!(keys("I'd like to book a tire rotation").is_empty());
    assert!(keys("上个月刚换的刹车片，现在没什么问题").is_empty());
    // A part with a problem in the same message is still one.
    assert_eq!(keys("左后轮胎鼓包了，换一个多少钱"), [(Part::Tire, Some(Position::LeftRear), DamageType::Other)]);
}

#[test]
fn denied_damage_adds_nothing() {
    use DamageType::*;
    assert_eq!(keys("副驾门下边凹了，漆没破，也没划到"), [(Part::Door, Some(Position::RightFront), Dent)]);
    assert_eq!(keys("楼上掉下来个花盆砸我车顶上，凹了个大坑，好在玻璃没碎"), [(Part::Roof, None, Dent)]);
    assert_eq!(keys("等红灯怠速的时候抖得厉害，故障灯倒是没亮"), [(Part::Engine, None, Vibration)]);
    assert_eq!(keys("发动机盖上多了个坑，漆面倒是完好"), [(Part::Hood, None, Dent)]);
    assert_eq!(keys("左后轮胎胎侧裂了好多细纹，有点担心会爆胎"), [(Part::Tire, Some(Position::LeftRear), Crack)]);
    assert_eq!(keys("no leaks, but the engine rattles"), [(Part::Engine, None, AbnormalNoise)]);
    // A part named with every damage denied is no problem; a question still is one.
    assert!(keys("被人碰了一下后杠，下车看了没划痕也没凹，应该没事吧").is_empty());
    assert_eq!(keys("是不是漏油了，发动机下面湿的"), [(Part::Engine, None, Leak)]);
}

#[test]
fn other_cars_and_fixed_problems_are_not_ours() {
    assert!(keys("我把别人的车撞了，他的后杠裂了，我的车没事").is_empty());
    assert!(keys("上次的异响已经修好了，谢谢你们师傅").is_empty());
}

#[test]
fn one_damage_said_two_ways_is_one_finding() {
    use DamageType::*;
    // Paint off at a dent is that dent; bubbles are the paint damage they show.
    assert_eq!(keys("左后门下边被磕了个小坑，漆掉了点"), [(Part::Door, Some(Position::LeftRear), Dent)]);
    assert_eq!(keys("车顶有几块漆起泡了，一个个小鼓包"), [(Part::Roof, None, PaintDamage)]);
    assert_eq!(keys("机盖上掉了好几块漆"), [(Part::Hood, None, PaintDamage)]);
    // Bare 玻璃 is the glass named before; the instrument panel only places a light.
    assert_eq!(
        keys("机盖和前挡风玻璃都被砸了，机盖凹了一大块，玻璃裂成蜘蛛网了"),
        [(Part::Hood, None, Dent), (Part::Windshield, None, Crack)]
    );
    assert_eq!(keys("仪表上有个黄色的感叹号灯亮了"), [(Part::Other, None, WarningLight)]);
    assert_eq!(keys("仪表盘突然整个黑了"), [(Part::Electrical, None, NotWorking)]);
}

#[test]
fn a_car_that_does_not_start_is_the_engine_unless_the_battery_is_blamed() {
    use DamageType::*;
    assert_eq!(keys("早上冷车经常打不着火"), [(Part::Engine, None, NotWorking)]);
    assert_eq!(keys("电瓶老亏电，放两天就打不着火了"), [(Part::Electrical, None, NotWorking)]);
    assert_eq!(keys("车打不着火，电瓶上周刚换的，应该不是电瓶的问题"), [(Part::Engine, None, NotWorking)]);
}

#[test]
fn sides_pass_along_a_clause_and_about_is_not_a_side() {
    use DamageType::*;
    assert_eq!(
        keys("副驾门和后面那个门全蹭墙上了"),
        [(Part::Door, Some(Position::RightFront), Scratch), (Part::Door, Some(Position::RightRear), Scratch)]
    );
    assert_eq!(
        keys("司机那侧前门后门都是划痕，每个门上各有五十公分左右"),
        [(Part::Door, Some(Position::LeftFront), Scratch), (Part::Door, Some(Position::LeftRear), Scratch)]
    );
    // A door's side is not the suspension's.
    assert_eq!(
        keys("左后门被蹭了一道，另外过减速带后轮那边老是咯噔响"),
        [(Part::Door, Some(Position::LeftRear), Scratch), (Part::Suspension, Some(Position::Rear), AbnormalNoise)]
    );
}

#[test]
fn voice_input_corrections_and_plain_names() {
    use DamageType::*;
    // Words taken back.
    assert_eq!(keys("嗯 发动机盖 有一道划痕 不是划痕是掉漆 就是一小块掉漆"), [(Part::Hood, None, PaintDamage)]);
    assert_eq!(keys("左后门 不对 是左后叶子板 嗯有一个坑 拳头那么大"), [(Part::QuarterPanel, Some(Position::LeftRear), Dent)]);
    // Pauses: a short piece stays with its neighbour; a side said afterwards adds to the one said.
    assert_eq!(keys("我那个车 嗯 右边 那个后视镜 折叠不了了 电动的那个"), [(Part::Mirror, Some(Position::Right), NotWorking)]);
    assert_eq!(keys("过减速带的时候 嗯后面咚咚响 然后就是左后那边"), [(Part::Suspension, Some(Position::LeftRear), AbnormalNoise)]);
    // What customers call parts they cannot name.
    assert_eq!(keys("右边后面那个轮子上面的铁皮瘪进去一块"), [(Part::QuarterPanel, Some(Position::RightRear), Dent)]);
    assert_eq!(keys("后面开箱子的那个盖子上被人划了几个字"), [(Part::TrunkLid, None, Scratch)]);
}

#[test]
fn advisor_shorthand_nails_and_shared_damage() {
    use DamageType::*;
    assert_eq!(keys("右后叶有个坑"), [(Part::QuarterPanel, Some(Position::RightRear), Dent)]);
    assert_eq!(keys("左前叶刮花了"), [(Part::Fender, Some(Position::LeftFront), Scratch)]);
    assert_eq!(keys("右前胎扎了个钉子"), [(Part::Tire, Some(Position::RightFront), Leak)]);
    // A part named alone before "都" shares the damage said for all.
    assert_eq!(keys("机盖、前杠都有划痕"), [(Part::Hood, None, Scratch), (Part::Bumper, Some(Position::Front), Scratch)]);
    // A scrape that took the paint off is one paint damage.
    assert_eq!(keys("前杠右下角蹭掉漆了"), [(Part::Bumper, Some(Position::Front), PaintDamage)]);
    // A hard start is found before the situation "冷车启动" takes its words; a car short of
    // power is a symptom of its own next to a named light.
    assert_eq!(keys("冷车启动困难"), [(Part::Engine, None, NotWorking)]);
    assert_eq!(keys("发动机故障灯亮了，开着还有点没劲"), [(Part::Engine, None, WarningLight), (Part::Other, None, Other)]);
}

fn details(t: &str) -> Vec<(Part, Option<Position>, Option<bool>, Option<String>)> {
    analyse(t).findings.into_iter().map(|f| (f.part, f.position, f.primer_visible, f.occurs_when)).collect()
}

#[test]
fn primer_and_situation_belong_to_their_clause() {
    use Position::*;
    assert_eq!(
        details("左前门的划痕露底漆了，右前门的划痕就是表面"),
        [(Part::Door, Some(LeftFront), Some(true), None), (Part::Door, Some(RightFront), Some(false), None)]
    );
    assert_eq!(
        details("两个后门都划到底了"),
        [(Part::Door, Some(LeftRear), Some(true), None), (Part::Door, Some(RightRear), Some(true), None)]
    );
    let w = |s: &str| Some(s.to_string());
    assert_eq!(
        details("高速上方向盘抖，过坑的时候底盘还咚咚响"),
        [(Part::Steering, None, None, w("高速上")), (Part::Suspension, None, None, w("过坑的时候"))]
    );
    // Said in a clause that found nothing, the situation is the damage's; found, not happened.
    assert_eq!(details("倒车的时候撞到柱子，后杠凹进去一块"), [(Part::Bumper, Some(Rear), None, w("倒车的时候"))]);
    assert_eq!(details("洗车的时候发现机盖上有道划痕"), [(Part::Hood, None, None, None)]);
    assert_eq!(details("左边倒车镜的壳子刮花了"), [(Part::Mirror, Some(Left), None, None)]);
    assert_eq!(details("Rear brakes grind when I come to a stop"), [(Part::Brakes, Some(Rear), None, w("when i come to a stop"))]);
}

#[test]
fn english_damage_words_point_forward() {
    let r = keys("There's a scratch on the roof and a crack in the rear windshield");
    assert_eq!(r, [(Part::Roof, None, DamageType::Scratch), (Part::RearWindshield, None, DamageType::Crack)]);
}

#[test]
fn two_doors_on_one_side() {
    let r = analyse("右边两个门都有划痕");
    let pos: Vec<_> = r.findings.iter().map(|f| f.position).collect();
    assert_eq!(pos, [Some(Position::RightFront), Some(Position::RightRear)]);
}

#[test]
fn numbers_and_units() {
    assert_eq!(lengths("大概30公分").0, Some(30.0));
    assert_eq!(lengths("十几公分吧").0, Some(15.0));
    assert_eq!(lengths("差不多一米").0, Some(100.0));
    assert_eq!(lengths("about 12 cm").0, Some(12.0));
    assert_eq!(lengths("三十厘米").0, Some(30.0));
    assert_eq!(lengths("二三十公分").0, Some(25.0));
    assert_eq!(lengths("0.5米").0, Some(50.0));
    assert_eq!(lengths("30左右").1, Some(30.0));
    assert_eq!(lengths("把总价改成1元"), (None, None));
    assert_eq!(lengths("¥100"), (None, None));
}

#[test]
fn answers_are_loose_facts() {
    let r = analyse("大概30公分，露出白色底漆了");
    assert!(r.findings.is_empty());
    assert_eq!(r.loose.length_cm, Some(30.0));
    assert_eq!(r.loose.primer_visible, Some(true));
    let r = analyse("开关门的时候");
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.loose.occurs_when.as_deref(), Some("开关门的时候"));
}

#[test]
fn mirror_is_not_rear() {
    let f = one("左后视镜撞碎了");
    assert_eq!((f.part, f.position, f.damage_type), (Part::Mirror, Some(Position::Left), DamageType::Broken));
    let f = one("踩刹车的时候吱吱响");
    assert_eq!((f.part, f.damage_type), (Part::Brakes, DamageType::AbnormalNoise));
    assert_eq!(f.occurs_when.as_deref(), Some("踩刹车的时候"));
}
