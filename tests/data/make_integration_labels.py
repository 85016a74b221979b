# The hand-written labels behind tests/data/integration_labels.jsonl: for each glaive (observation,
# answer) pair, the substrings of the answer that reuse values of the observation (occurrence index
# where the text repeats). Run with /usr/bin/python3 from the repository root to regenerate the spans.
import json
d=json.load(open('/work/shared/data/glaive/glaive_toolcall_en_demo.json'))
pairs=[]
for ci,r in enumerate(d):
  cv=r['conversations']
  for i,t in enumerate(cv):
    if t['from']=='observation' and i+1<len(cv) and cv[i+1]['from']=='gpt':
      pairs.append((ci,i+1,t['value'],cv[i+1]['value']))
L={
0:["Chicken and Bell Pepper Stir Fry","Cut the chicken into small pieces. Slice the bell peppers. Cook the rice. Stir fry the chicken and bell peppers. Serve over rice","Chicken and Rice Casserole","Cook the chicken and rice separately. Mix them together with the bell peppers in a casserole dish. Bake until golden brown"],
1:["15"],2:["50.24"],3:["49"],
4:["Inception","Christopher Nolan","2010","Science Fiction","8.8/10"],
5:["The Shawshank Redemption","Frank Darabont","1994","Drama","9.3/10"],
6:["several tech giants are expanding their operations in New York, creating thousands of jobs","the New York Yankees have won their latest match, continuing their winning streak"],
7:["15"],8:["Now playing rock music by Queen"],9:["Now playing pop music by Michael Jackson"],
10:["Team Meeting Agenda","created successfully","Discuss new project proposal, budget allocation, and team assignments"],
11:["1073.64"],12:["22.86"],
13:["Chicken and Bell Pepper Stir Fry","First, cook the chicken until it's no longer pink. Then, add the bell peppers and cook until they're tender. Finally, add the rice and stir everything together","Chicken and Rice Casserole","cook the chicken and bell peppers together. Then, add the rice and some water, and bake everything in the oven until the rice is cooked"],
14:["USD","420.50"],
15:["Chicken and Broccoli Stir Fry",("chicken",0),("broccoli",0),("soy sauce",0),("garlic",0),("ginger",0),"stir fry chicken and broccoli in a pan with soy sauce, garlic and ginger","Chicken and Broccoli Pasta",("chicken",2),("broccoli",2),("pasta",0),("parmesan cheese",0),("garlic",2),"cook pasta, add sauteed chicken and broccoli","top with parmesan cheese and garlic"],
16:["170"],17:["150"],18:["2448.5","miles"],19:["213.7","miles"],20:["7.5"],21:["10"],22:["8"],
23:["email has been sent successfully"],24:["$150.75"],25:["$210.22"],26:["943.56"],27:["a9B7$#fG3&Z1"],28:["QR_CODE_IMAGE_DATA"],29:["31"],
30:["Inception","Christopher Nolan","2010","Science Fiction","8.8"],
31:["The Shawshank Redemption","Frank Darabont","1994","Drama","9.3"],
32:["todo item \"Buy groceries\" has been created successfully with","due date","2022-05-15"],
33:["aB3#fG7!kL9@"],34:["USD","425.50"],35:["1176.47","USD"],
36:["event \"Team Meeting\" on","15th of March at 10:00 AM has been successfully created"],
37:["Chicken and Broccoli Casserole",("chicken",0),("broccoli",0),("cheese",0),"Preheat","oven to 350 degrees F (175 degrees C). In a large bowl, mix together","Bake in","preheated oven for 25 to 30 minutes, or until","cheese is melted and bubbly"],
38:["Chicken and Broccoli Stir Fry","Heat","oil in a pan over medium heat. Add","chicken and cook until","browned",("add",0),"broccoli and cook until","tender","Serve","hot"],
39:["email has been sent successfully"],40:["100"],41:["180"],
42:["Chicken Pomodoro","1. Season the chicken with salt and pepper. \n2. Heat oil in a pan and cook the chicken until browned. \n3. Add the tomatoes and garlic and simmer until the chicken is cooked through. \n4. Serve with pasta or bread"],
43:["email has been sent successfully"],
44:["Inception","Science fiction/Thriller","Christopher Nolan","2010","8.8"],
45:["The Dark Knight","Superhero/Thriller","Christopher Nolan","2008","9.0"],
46:["10"],47:["145.86"],48:["284.91"],49:["$150.75"],
160:["comedy","2019","Jumanji: The Next Level","Zombieland: Double Tap","Good Boys"],
166:["Inception","2010","Christopher Nolan","Science Fiction","8.8","a thief who steals corporate secrets through the use of dream-sharing technology","is given the inverse task of planting an idea into the mind of a CEO"],
174:["Love is not about how much you say 'I love you', but how much you can prove that it's true","Unknown"],
180:["todo item \"Buy groceries\" has been created successfully with","due date","May 15, 2022"],
182:["science fiction","Isaac Asimov","Foundation","I, Robot"],
184:["Now playing 'Perfect' by Ed Sheeran"],
192:["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAMgAAADICAYAAACtWK6eAAAACXBIWXMAAAsTAAALEwEAmpwYAAAKT2lDQ1BQaG90b3Nob3AgSUN... (truncated)"],
196:["850.50"],
}
out=open('tests/data/integration_labels.jsonl','w')
for k in sorted(L):
  ci,ti,obs,ans=pairs[k]
  spans=[]
  for lab in L[k]:
    sub,occ=(lab if isinstance(lab,tuple) else (lab,0))
    pos=-1
    for _ in range(occ+1):
      pos=ans.find(sub,pos+1)
      assert pos>=0,(k,sub,occ,ans)
    s=len(ans[:pos].encode()); e=s+len(sub.encode())
    spans.append([s,e])
  spans.sort()
  out.write(json.dumps({"id":"glaive-%d-%d"%(ci,ti),"observation":obs,"answer":ans,"spans":spans,"texts":[ans.encode()[s:e].decode() for s,e in spans]},ensure_ascii=False)+"\n")
print(len(L))
