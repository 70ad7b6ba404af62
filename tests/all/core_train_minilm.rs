//! Training a head on the real `minilm` through the normal batched embedding path and the
//! sealed embedding cache (docs/classification.md, part a).

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use llmos::config::{Config, Paths};
use llmos::core::Core;
use llmos::core::manifest::FileRole;
use llmos::core::train::run::{Embedder, Progress, train};
use llmos::core::train::{Recipe, data};
use llmos::data::embed_cache::Cached;
use llmos::data::{Store, Tree};
use llmos::security::seal::Sealer;

use crate::support::Home;

const SPORT: [&str; 20] = [
    "The striker scored twice in the second half",
    "Our goalkeeper saved a penalty in the final minute",
    "The tennis final went to five sets",
    "She won the marathon in record time",
    "The referee showed him a red card",
    "They lost the match on penalties",
    "The team trains every morning at the stadium",
    "He hit a home run in the ninth inning",
    "The cyclist attacked on the last climb of the stage",
    "Fans cheered as the home side equalised",
    "The coach changed the lineup for the derby",
    "The sprinter false-started and was disqualified",
    "Our basketball team won the championship",
    "The boxer was knocked out in the third round",
    "The swimmer broke the world record in the relay",
    "The league table is tight at the top this season",
    "The quarterback threw a touchdown pass",
    "The golfer sank a long putt on the eighteenth hole",
    "The rugby team scored a try in extra time",
    "The skier crashed on the downhill course",
];

const FOOD: [&str; 20] = [
    "Simmer the tomato sauce for twenty minutes",
    "Knead the dough until it is smooth and elastic",
    "Add a pinch of salt to the boiling pasta water",
    "The soup needs more garlic and black pepper",
    "Whisk the eggs with sugar until pale",
    "Roast the vegetables with olive oil and rosemary",
    "This curry is made with coconut milk and lentils",
    "Bake the bread at two hundred degrees",
    "Slice the onions thinly and fry them until golden",
    "The cake was topped with fresh strawberries",
    "Marinate the chicken overnight in yoghurt and spices",
    "Grate the cheese over the lasagne before baking",
    "Stir the risotto slowly, adding stock little by little",
    "Season the steak and sear it in a hot pan",
    "The salad dressing is lemon juice, mustard and honey",
    "Melt the butter and chocolate together",
    "Peel and chop the potatoes for the mash",
    "The pancakes were served with maple syrup",
    "Toast the spices before grinding them",
    "Steam the rice and let it rest before serving",
];

fn minilm(home: &Home) -> (std::sync::Arc<llmos::core::Model>, String) {
    let config = Config::load(&home.dir.path().join("llmos.toml")).unwrap();
    let paths = Paths::resolve(home.dir.path().to_path_buf(), &config);
    let core = Core::new(config, paths).unwrap();
    let model = core.model("minilm").unwrap();
    let sha = model
        .manifest
        .files
        .iter()
        .find(|f| f.role == FileRole::Model)
        .unwrap()
        .sha256
        .clone();
    (model, sha)
}

fn recipe(sha: &str, hidden: usize) -> Recipe {
    serde_json::from_value(serde_json::json!({
        "base": "minilm", "base_sha256": sha,
        "data": {"kind": "local", "path": "topics.jsonl", "sha256": "00"},
        "format": "jsonl", "label_column": "topic", "hidden": hidden,
    }))
    .unwrap()
}

#[test]
fn a_head_on_real_minilm_embeddings_separates_two_topics_and_a_second_run_embeds_nothing() {
    let home = Home::new();
    let (model, sha) = minilm(&home);
    let mut jsonl = String::new();
    for (s, f) in SPORT.iter().zip(FOOD) {
        jsonl += &serde_json::json!({"text": s, "topic": "sport"}).to_string();
        jsonl += "\n";
        jsonl += &serde_json::json!({"text": f, "topic": "food"}).to_string();
        jsonl += "\n";
    }
    let file = home.dir.path().join("topics.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    let r = recipe(&sha, 0);
    let ds = data::dataset(
        data::read_file(&file, "topics.jsonl", &r).unwrap(),
        "topics.jsonl",
        &r,
    )
    .unwrap();
    assert_eq!(ds.classes, vec!["food", "sport"]);

    let store = Store::open(&home.dir.path().join("store"), Sealer::from_key([9; 32])).unwrap();
    let no = AtomicBool::new(false);
    let reports = Mutex::new(Vec::new());
    let cache = Cached::new(&store, model.as_ref(), &sha);
    let t = train(
        &ds,
        &r,
        &cache,
        &|p| reports.lock().unwrap().push(p.clone()),
        &no,
    )
    .unwrap();
    eprintln!(
        "minilm: embedded {} texts in {:.2} s ({:.0} texts/s); fit {:.3} s, {} epochs",
        t.embedded,
        t.embed_seconds,
        t.embedded as f64 / t.embed_seconds,
        t.fit_seconds,
        t.metrics.epochs
    );
    assert_eq!((t.embedded, t.cached), (40, 0));
    assert!(t.metrics.accuracy >= 0.9, "{:?}", t.metrics);
    assert_eq!(t.metrics.validation_rows, 8);
    assert_eq!(t.head.inputs(), 384);
    let last = reports
        .lock()
        .unwrap()
        .iter()
        .rfind(|p| matches!(p, Progress::Embedding { .. }))
        .cloned();
    assert_eq!(
        last,
        Some(Progress::Embedding {
            done: 40,
            total: 40,
            cached: 0
        })
    );

    // Unseen sentences, through the same model and the learnt head.
    let probe = vec![
        "The midfielder was injured during the warm-up".to_string(),
        "Fold the flour into the beaten egg whites".to_string(),
    ];
    let v = Embedder::embed(model.as_ref(), &probe).unwrap();
    let sport = t.head.probabilities(&v[0]);
    let food = t.head.probabilities(&v[1]);
    assert!(
        sport[1] > 0.5 && food[0] > 0.5,
        "sport {sport:?}, food {food:?}"
    );

    // Other hyper-parameters: every vector comes from the cache, identical to the first run's.
    let cache = Cached::new(&store, model.as_ref(), &sha);
    let h = train(&ds, &recipe(&sha, 16), &cache, &|_| {}, &no).unwrap();
    assert_eq!((h.embedded, h.cached), (0, 40));
    assert_eq!(h.head.layers.len(), 2);
    assert!(h.metrics.accuracy >= 0.9, "{:?}", h.metrics);
    let again = train(
        &ds,
        &r,
        &Cached::new(&store, model.as_ref(), &sha),
        &|_| {},
        &no,
    )
    .unwrap();
    assert_eq!(
        again.head, t.head,
        "cached vectors give bit-identical weights"
    );
    assert_eq!(store.count(Tree::EmbedCache).unwrap(), 40);
}

/// Throughput of minilm through `Model` (the training path) and of the cache that replaces it
/// on a second run: `cargo test -p llmos --test all -- --ignored minilm_training_throughput --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn minilm_training_throughput() {
    let home = Home::new();
    let (model, sha) = minilm(&home);
    let texts: Vec<String> = SPORT
        .iter()
        .flat_map(|s| FOOD.iter().map(move |f| format!("{s}, and then: {f}.")))
        .chain(
            SPORT
                .iter()
                .flat_map(|s| FOOD.iter().map(move |f| format!("{f}; {s}."))),
        )
        .collect();
    let store = Store::open(&home.dir.path().join("store"), Sealer::from_key([9; 32])).unwrap();
    Embedder::embed(model.as_ref(), &texts[..64]).unwrap(); // warm-up
    let cache = Cached::new(&store, model.as_ref(), &sha);
    let t = std::time::Instant::now();
    let first = cache.embed(&texts).unwrap();
    let cold = t.elapsed().as_secs_f64();
    let cache = Cached::new(&store, model.as_ref(), &sha);
    let t = std::time::Instant::now();
    let second = cache.embed(&texts).unwrap();
    let warm = t.elapsed().as_secs_f64();
    assert_eq!(first, second);
    eprintln!(
        "{} texts: minilm through Model + cache writes {:.2} s ({:.0} texts/s); from the cache {:.3} s ({:.0} texts/s)",
        texts.len(),
        cold,
        texts.len() as f64 / cold,
        warm,
        texts.len() as f64 / warm
    );
}
