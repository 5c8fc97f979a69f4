// Runs the assignment algorithm of `kafka-reassign-partitions --generate` (Kafka 4.x) on a
// current assignment read from a file, without a live cluster, for cargo bench --bench planner.
//
// --generate reads the current assignment and broker metadata from a cluster and then calls the
// private static ReassignPartitionsCommand.calculateAssignment(Map<TopicPartition, List<Integer>>,
// List<UsableBroker>), which is pure. This harness calls that same method by reflection.
//
// Usage: java -cp <classes>:<kafka libs>/* KafkaGenerate IN OUT [IN OUT ...]
// IN:  {"version":1,"partitions":[{"topic":..,"partition":..,"replicas":[..]}],
//       "brokers":[{"id":0,"rack":"a"|null}]}   (brokers = the broker list AFTER the change)
// OUT: {"version":1,"partitions":[...],"nanos":<time spent in calculateAssignment>}
// One JVM handles every scenario; each call is timed on its own.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.metadata.placement.UsableBroker;
import org.apache.kafka.tools.reassign.ReassignPartitionsCommand;

public class KafkaGenerate {
    public static void main(String[] args) throws Exception {
        if (args.length == 0 || args.length % 2 != 0) {
            System.err.println("usage: KafkaGenerate IN OUT [IN OUT ...]");
            System.exit(2);
        }
        Method calculate = ReassignPartitionsCommand.class.getDeclaredMethod(
                "calculateAssignment", Map.class, List.class);
        calculate.setAccessible(true);
        ObjectMapper json = new ObjectMapper();
        for (int i = 0; i < args.length; i += 2) {
            JsonNode in = json.readTree(new File(args[i]));
            Map<TopicPartition, List<Integer>> current = new HashMap<>();
            for (JsonNode p : in.get("partitions")) {
                List<Integer> replicas = new ArrayList<>();
                for (JsonNode r : p.get("replicas")) {
                    replicas.add(r.asInt());
                }
                current.put(new TopicPartition(p.get("topic").asText(), p.get("partition").asInt()), replicas);
            }
            List<UsableBroker> brokers = new ArrayList<>();
            for (JsonNode b : in.get("brokers")) {
                JsonNode rack = b.get("rack");
                Optional<String> r = rack == null || rack.isNull() ? Optional.empty() : Optional.of(rack.asText());
                brokers.add(new UsableBroker(b.get("id").asInt(), r, false));
            }

            long start = System.nanoTime();
            @SuppressWarnings("unchecked")
            Map<TopicPartition, List<Integer>> proposed =
                    (Map<TopicPartition, List<Integer>>) calculate.invoke(null, current, brokers);
            long nanos = System.nanoTime() - start;

            List<TopicPartition> order = new ArrayList<>(proposed.keySet());
            order.sort(Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
            ObjectNode out = json.createObjectNode();
            out.put("version", 1);
            ArrayNode parts = out.putArray("partitions");
            for (TopicPartition tp : order) {
                ObjectNode p = parts.addObject();
                p.put("topic", tp.topic());
                p.put("partition", tp.partition());
                ArrayNode replicas = p.putArray("replicas");
                for (Integer r : proposed.get(tp)) {
                    replicas.add(r);
                }
            }
            out.put("nanos", nanos);
            json.writeValue(new File(args[i + 1]), out);
        }
    }
}
