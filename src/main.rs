fn main() {
    print!(
        "{}",
        serde_yaml::to_string(
            &<kafka_operator::api::KafkaCluster as kube::CustomResourceExt>::crd()
        )
        .unwrap()
    );
}
